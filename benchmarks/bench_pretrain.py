"""Benchmark: pretraining throughput (samples/s) of the five SSL methods, with and
without Group-DRO, against a plain encoder step in the same process.

Reference: one "supervised-like" step of the bare encoder on one view per sample
(forward, mean of the embedding as a stand-in loss, backward, AdamW step) at the same
size and batch. A method's ratio ``method samples/s / reference samples/s`` says how
much its views, heads and momentum/EMA networks cost on top of one encoder pass
(SimCLR/MoCo/BYOL: 2 views; DINO: 2 global + local views and a teacher; MAE: one
masked view and a decoder). Group-DRO's cost is the ratio DRO / ERM of the same
method. The augmentation pipeline (MONAI, per sample, all of a method's views) is
timed separately as samples/s of one DataLoader worker.

Sizes:
- tiny: ResNet10, widen 0.25, 32^3, batch 4 (what the tests and the demo train);
- full: ResNet50, widen 1, 128^3 (the NeuroRAD-FM encoder), batch 2, one timed step
  after one warm-up step, for the reference, MAE and SimCLR only (a CPU step takes
  minutes; this is a GPU workload; the GPU paths are not measured here).

Peak resident memory (ru_maxrss, process-wide, monotone) is printed after each stage.

Learning-curve point (``--curve N``): what one ``pretrain --curve-every`` point costs
on N patients at the tiny size, as a ratio to one SimCLR training epoch over the same
N patients (estimated from the timed step): the eval-mode embedding pass over the
cohort, and the two probes of :class:`neurofeat.runs.pretrain.LearningCurveProbe`
(5-fold task AUC and site balanced accuracy) on random embeddings with random labels.

Run: python benchmarks/bench_pretrain.py [--skip-full] [--threads 2] [--curve 240]
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any, Callable

import torch

from neurofeat.extract.augment import AugmentConfig, MultiViewAugment
from neurofeat.extract.dro import GroupDRO, erm_objective
from neurofeat.extract.encoders import EncoderConfig, build_encoder
from neurofeat.extract.methods import METHOD_NAMES, build_method

TINY_HEADS = {
    "simclr": {"proj_hidden_dim": 512, "proj_dim": 128},
    "moco": {"proj_hidden_dim": 512, "proj_dim": 128, "queue_size": 256},
    "byol": {"proj_hidden_dim": 512, "proj_dim": 128},
    "dino": {"out_dim": 1024, "hidden_dim": 512, "bottleneck_dim": 128, "n_local": 4},
    "mae": {"decoder_dim": 64},
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_steps(step: Callable[[], None], n_warmup: int, n_timed: int) -> float:
    for _ in range(n_warmup):
        step()
    start = time.perf_counter()
    for _ in range(n_timed):
        step()
    return (time.perf_counter() - start) / n_timed


def reference_step(cfg: EncoderConfig, batch: int) -> Callable[[], None]:
    encoder = build_encoder(cfg).train()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-4)
    x = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)

    def step() -> None:
        loss = encoder(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def method_step(name: str, cfg: EncoderConfig, batch: int, heads: dict[str, Any], dro: bool) -> Callable[[], None]:
    method = build_method(name, build_encoder(cfg), **heads).train()
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-4)
    views = [torch.randn(batch, cfg.in_channels, s.size, s.size, s.size)
             for s in method.view_specs(cfg.input_size) for _ in range(s.count)]
    groups = torch.arange(batch) % 2
    group_dro = GroupDRO(2, eta=0.01) if dro else None

    def step() -> None:
        per_sample = method(views)
        outcome = group_dro(per_sample, groups) if group_dro is not None else erm_objective(per_sample, groups, 2)
        optimizer.zero_grad()
        outcome.objective.backward()
        optimizer.step()
        method.after_step(0.5)

    return step


def augmentation_rate(name: str, cfg: EncoderConfig, n_samples: int) -> float:
    method = build_method(name, build_encoder(cfg), **TINY_HEADS[name])
    augment = MultiViewAugment(method.view_specs(cfg.input_size), AugmentConfig())
    image = torch.randn(cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)
    augment(image, seed=0, epoch=0, index=0)
    start = time.perf_counter()
    for index in range(n_samples):
        augment(image, seed=0, epoch=0, index=index)
    return n_samples / (time.perf_counter() - start)


def curve_cost(cfg: EncoderConfig, n: int, batch: int, steps: int) -> None:
    """One learning-curve point (embedding pass + the two probes) vs one SimCLR epoch on *n* patients."""
    import numpy as np

    from neurofeat.extract.embed import embed_batch, prepare_encoder
    from neurofeat.extract.pretrain import EpochEmbeddings
    from neurofeat.runs.pretrain import LearningCurveProbe

    epoch = time_steps(method_step("simclr", cfg, batch, TINY_HEADS["simclr"], dro=False), 1, steps) * n / batch
    encoder = prepare_encoder(build_encoder(cfg), torch.device("cpu"))
    volumes = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)
    start = time.perf_counter()
    chunks = [embed_batch(encoder, volumes, torch.device("cpu")) for _ in range(0, n, batch)]
    embed_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    ids = np.array([f"P{i:04d}" for i in range(n)])
    probe = LearningCurveProbe(task="bench", patient_ids=ids, labels=rng.random(n) < 0.3,
                               site_of={p: f"site{i % 3}" for i, p in enumerate(ids)})
    snapshot = EpochEmbeddings(0, np.concatenate(chunks)[:n], tuple(ids), tuple("x" * n))
    start = time.perf_counter()
    probe(snapshot)
    probe_s = time.perf_counter() - start
    print(f"\n== learning-curve point, {n} patients (tiny) ==")
    print(f"SimCLR epoch (estimated) {epoch:6.1f} s; embedding pass {embed_s:5.1f} s; probes {probe_s:5.1f} s; "
          f"point / epoch = {(embed_s + probe_s) / epoch:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-full", action="store_true", help="Skip ResNet50 at 128^3.")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: the tiny convolutions gain nothing from more, and a shared machine adds noise).")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps at the tiny size.")
    parser.add_argument("--curve", type=int, default=0, metavar="N",
                        help="Also time one learning-curve point on N patients (0: skip).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU")

    tiny = EncoderConfig(arch="resnet10", widen_factor=0.25, input_size=32)
    batch = 4
    ref = time_steps(reference_step(tiny, batch), 2, args.steps)
    ref_rate = batch / ref
    print(f"\n== tiny: resnet10 x0.25 @ 32^3, batch {batch} ==  (peak RSS so far {peak_rss_mb():.0f} MB)")
    print(f"reference (bare encoder, 1 view): {ref_rate:8.1f} samples/s  ({ref * 1000:.0f} ms/step)")
    print(f"{'method':8s} {'ERM samples/s':>14s} {'ratio vs ref':>13s} {'DRO samples/s':>14s} "
          f"{'DRO/ERM':>8s} {'augment samples/s':>18s}")
    for name in METHOD_NAMES:
        erm = time_steps(method_step(name, tiny, batch, TINY_HEADS[name], dro=False), 2, args.steps)
        dro = time_steps(method_step(name, tiny, batch, TINY_HEADS[name], dro=True), 2, args.steps)
        aug = augmentation_rate(name, tiny, 8)
        print(f"{name:8s} {batch / erm:14.1f} {(batch / erm) / ref_rate:13.2f} {batch / dro:14.1f} "
              f"{erm / dro:8.2f} {aug:18.1f}")
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    if args.curve:
        curve_cost(tiny, args.curve, batch, args.steps)

    if args.skip_full:
        return
    full = EncoderConfig(arch="resnet50", widen_factor=1.0, input_size=128)
    batch = 2
    print(f"\n== full: resnet50 @ 128^3, batch {batch}, 1 warm-up + 1 timed step ==")
    ref = time_steps(reference_step(full, batch), 1, 1)
    ref_rate = batch / ref
    print(f"reference (bare encoder, 1 view): {ref_rate:8.3f} samples/s  ({ref:.1f} s/step)  "
          f"peak RSS {peak_rss_mb():.0f} MB")
    full_heads = {"mae": {}, "simclr": {}}
    for name in ("mae", "simclr"):
        seconds = time_steps(method_step(name, full, batch, full_heads[name], dro=True), 1, 1)
        print(f"{name:8s} + DRO: {batch / seconds:8.3f} samples/s ({seconds:.1f} s/step), "
              f"ratio vs ref {(batch / seconds) / ref_rate:.2f}, peak RSS {peak_rss_mb():.0f} MB")
    rate = augmentation_rate("simclr", full, 2)
    print(f"augmentation at 128^3 (SimCLR, 2 views): {rate:.2f} samples/s per worker")


if __name__ == "__main__":
    main()
