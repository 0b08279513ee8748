"""Group-DRO and the trainer under `torchrun --nproc-per-node 2` (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.torch, pytest.mark.slow]

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    import torch.distributed as dist
    from neurofeat.extract.dro import GroupDRO

    out_dir = sys.argv[1]
    rank = int(os.environ["RANK"])

    # --- part 1: Group-DRO on a toy batch split over two ranks
    dist.init_process_group("gloo")
    losses_all = torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0, 2.5])
    groups_all = torch.tensor([0, 0, 1, 1, 2, 1])
    part = slice(0, 3) if rank == 0 else slice(3, 6)
    dro = GroupDRO(3, eta=0.1)
    q_trace, grads = [], []
    for step in range(3):
        local = (losses_all[part] * (step + 1)).clone().requires_grad_(True)
        outcome = dro(local, groups_all[part])
        outcome.objective.backward()
        q_trace.append(outcome.q.tolist())
        grads.append(local.grad.tolist())

    # --- part 2: a tiny DRO pretraining run in the same process group
    from neurofeat.extract.encoders import EncoderConfig
    from neurofeat.extract.pretrain import PretrainConfig, pretrain
    from neurofeat.extract.pretrain_data import cohort_from_records
    import neurofeat.extract.dro as dro_module

    trained_q = []
    original_forward = dro_module.GroupDRO.forward
    def recording_forward(self, losses, groups):
        outcome = original_forward(self, losses, groups)
        trained_q.append(outcome.q.tolist())
        return outcome
    dro_module.GroupDRO.forward = recording_forward

    class FakePreprocess:
        def __call__(self, record):
            number = int(record["patient_id"][1:])
            image = torch.randn(4, 32, 32, 32, generator=torch.Generator().manual_seed(number))
            return {"image": image + (1.0 if record["site"] == "A" else 0.0)}

    records = [{"patient_id": f"P{i:02d}", "site": "A" if i < 3 else "B", "t1": None, "t1ce": None,
                "t2": None, "flair": None} for i in range(8)]
    cohort = cohort_from_records(records, ["site"])
    config = PretrainConfig(
        method="simclr", dro=True, eta=1.0,
        encoder=EncoderConfig(arch="resnet10", widen_factor=0.25, input_size=32, spacing=(2.0, 2.0, 2.0)),
        method_params={"proj_hidden_dim": 32, "proj_dim": 16}, epochs=1, batch_size=2, lr=1e-3)
    result = pretrain(config, cohort, os.path.join(out_dir, "simclr_dro"), preprocess=FakePreprocess(),
                      progress=False)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump({"q_trace": q_trace, "grads": grads, "trained_q": trained_q,
                   "returned": result is not None}, handle)
    dist.destroy_process_group()
    """
)


def test_q_identical_across_two_gloo_ranks(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(29500 + os.getpid() % 1000), str(script), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())

    # Same q on both ranks, equal to the single-process update on the whole batch,
    # computed here by hand from q_g <- q_g exp(eta L_g), renormalised.
    assert rank0["q_trace"] == rank1["q_trace"]
    q = np.full(3, 1 / 3)
    for step in range(3):
        group_loss = np.array([1.5, (3.0 + 0.5 + 2.5) / 3, 4.0]) * (step + 1)
        q = q * np.exp(0.1 * group_loss)
        q = q / q.sum()
        np.testing.assert_allclose(rank0["q_trace"][step], q, rtol=1e-6)
    # Local gradients are world_size * q_g / (global count of g): averaged by DDP they
    # equal the single-process gradient q_g / count_g.
    q1 = np.exp(0.1 * np.array([1.5, 2.0, 4.0]))
    q1 = q1 / q1.sum()
    np.testing.assert_allclose(rank0["grads"][0], [2 * q1[0] / 2, 2 * q1[0] / 2, 2 * q1[1] / 3], rtol=1e-6)
    np.testing.assert_allclose(rank1["grads"][0], [2 * q1[1] / 3, 2 * q1[2] / 1, 2 * q1[1] / 3], rtol=1e-6)

    # The trainer under torchrun: identical q at every step on both ranks; rank 0 writes.
    assert len(rank0["trained_q"]) == 2 and rank0["trained_q"] == rank1["trained_q"]
    assert rank0["trained_q"][-1] != [0.5, 0.5]
    assert rank0["returned"] and not rank1["returned"]
    card = json.loads((tmp_path / "simclr_dro" / "card.json").read_text())
    assert card["world_size"] == 2
    assert card["groups"]["A"]["q"] == pytest.approx(rank0["trained_q"][-1][0], rel=1e-6)
