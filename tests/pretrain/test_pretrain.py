"""The trainer: backbone directory, complete card, Group-DRO in training, exact resume."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from neurofeat.extract.augment import AugmentConfig  # noqa: E402
from neurofeat.extract.checkpoint import (  # noqa: E402
    list_backbones,
    load_checkpoint,
    missing_card_keys,
)
from neurofeat.extract.pretrain import (  # noqa: E402
    STATE_DIR,
    PretrainConfig,
    PretrainError,
    pretrain,
)
from neurofeat.extract.pretrain_data import cohort_from_records  # noqa: E402

pytestmark = pytest.mark.torch

LIGHT = AugmentConfig(affine_prob=0.0, gibbs_prob=0.0, bias_prob=0.0, blur_prob=0.0)


def _config(tiny_config, small_heads, method="simclr", **changes):
    values = dict(method=method, encoder=tiny_config, method_params=small_heads[method], epochs=2,
                  batch_size=4, lr=1e-3, augment=LIGHT)
    values.update(changes)
    return PretrainConfig(**values)


def test_pretrain_writes_a_complete_backbone(tmp_path, tiny_config, small_heads, fake_preprocess, make_records):
    cohort = cohort_from_records(make_records(8, n_site_a=3), ["site"])
    config = _config(tiny_config, small_heads, dro=True, eta=0.1, adjustment=1.0)
    result = pretrain(config, cohort, tmp_path / "simclr_dro", preprocess=fake_preprocess, progress=False)
    folder = tmp_path / "simclr_dro"
    card = json.loads((folder / "card.json").read_text())
    assert missing_card_keys(card) == []
    assert card["name"] == "simclr_dro" and card["method"] == "simclr" and card["dro"] is True
    assert card["eta"] == 0.1 and card["C"] == 1.0 and card["group_by"] == ["site"]
    assert {g: v["n"] for g, v in card["groups"].items()} == {"A": 3, "B": 5}
    assert sum(v["q"] for v in card["groups"].values()) == pytest.approx(1.0, abs=1e-6)
    assert card["preprocess_sha256"] == config.preprocess.sha256()
    assert card["manifest_sha256"] == cohort.manifest_sha256
    assert [h["epoch"] for h in card["loss_history"]] == [1, 2]
    assert set(card["loss_history"][0]["group_loss"]) == {"A", "B"}
    assert card["groups"]["A"]["q"] == pytest.approx(card["loss_history"][-1]["q"]["A"])
    assert (folder / "loss_curve.png").stat().st_size > 0 and (folder / "loss_curve.svg").exists()
    assert not (folder / STATE_DIR).exists()
    loaded = load_checkpoint(folder)
    assert loaded.sha256 == card["checkpoint_sha256"] == result.checkpoint_sha256
    assert [info.name for info in list_backbones(tmp_path)] == ["simclr_dro"]
    frame = result.to_frame()
    assert list(frame.columns) == ["epoch", "group", "n_patients", "loss", "q"] and len(frame) == 4
    assert "simclr_dro" in result.summary()
    with pytest.raises(PretrainError, match="already holds a trained backbone; pass --overwrite"):
        pretrain(config, cohort, folder, preprocess=fake_preprocess, progress=False)


def test_dro_upweights_the_group_with_higher_loss(tmp_path, tiny_config, small_heads, make_records):
    # MAE on volumes of site A with 3x the intensity spread: their reconstruction loss
    # is larger, so Group-DRO must move q towards A.
    class SpreadPreprocess:
        def __call__(self, record):
            number = int(record["patient_id"][1:])
            image = torch.randn(4, 32, 32, 32, generator=torch.Generator().manual_seed(number))
            return {"image": image * (3.0 if record["site"] == "A" else 1.0)}

    cohort = cohort_from_records(make_records(8, n_site_a=4), ["site"])
    config = _config(tiny_config, small_heads, method="mae", dro=True, eta=0.05, epochs=1)
    result = pretrain(config, cohort, tmp_path / "mae_dro", preprocess=SpreadPreprocess(), progress=False)
    last = result.history[-1]
    assert last["group_loss"]["A"] > last["group_loss"]["B"]
    assert result.card["groups"]["A"]["q"] > 0.5 > result.card["groups"]["B"]["q"]


def test_resume_continues_exactly_where_it_stopped(tmp_path, tiny_config, small_heads, fake_preprocess,
                                                    make_records):
    # MoCo: momentum encoder, queue and optimiser state must all survive the restart.
    cohort = cohort_from_records(make_records(8), ["site"])
    config = _config(tiny_config, small_heads, method="moco", dro=True, eta=0.5)
    straight = pretrain(config, cohort, tmp_path / "straight", preprocess=fake_preprocess, progress=False)

    folder = tmp_path / "interrupted"
    assert pretrain(config, cohort, folder, preprocess=fake_preprocess, progress=False, stop_after_epoch=1) is None
    assert (folder / STATE_DIR / "progress.json").exists() and not (folder / "model.safetensors").exists()
    progress_file = json.loads((folder / STATE_DIR / "progress.json").read_text())
    assert progress_file["epochs_done"] == 1

    changed = _config(tiny_config, small_heads, method="moco", dro=True, eta=0.5, lr=2e-3)
    with pytest.raises(PretrainError, match=r"different configuration \(changed: \['lr'\]\)"):
        pretrain(changed, cohort, folder, preprocess=fake_preprocess, progress=False)

    resumed = pretrain(config, cohort, folder, preprocess=fake_preprocess, progress=False)
    assert resumed.resumed_from == 1
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert resumed.card["groups"] == straight.card["groups"]
    a = load_checkpoint(tmp_path / "straight").encoder.state_dict()
    b = load_checkpoint(folder).encoder.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.checkpoint_sha256 == straight.checkpoint_sha256


def test_cohort_errors_name_the_column(make_records):
    with pytest.raises(ValueError, match=r"group column 'cohort' not found \(patient P00\)"):
        cohort_from_records(make_records(4), ["cohort"])
    records = make_records(3) + make_records(1)
    with pytest.raises(ValueError, match="patient P00 appears twice"):
        cohort_from_records(records, ["site"])


def test_config_errors(tiny_config):
    with pytest.raises(ValueError, match="unknown pretraining method 'swav'"):
        PretrainConfig(method="swav", encoder=tiny_config)
    with pytest.raises(ValueError, match="Group-DRO needs at least one --group-by column"):
        PretrainConfig(method="dino", dro=True, group_by=(), encoder=tiny_config)


def test_too_few_patients(tmp_path, tiny_config, small_heads, fake_preprocess, make_records):
    cohort = cohort_from_records(make_records(1), ["site"])
    with pytest.raises(PretrainError, match="1 patient\\(s\\) over 1 rank\\(s\\).*at least 2"):
        pretrain(_config(tiny_config, small_heads), cohort, tmp_path / "x", preprocess=fake_preprocess,
                 progress=False)


def test_workers_and_disk_cache_do_not_change_the_result(tmp_path, tiny_config, small_heads, fake_preprocess,
                                                         make_records):
    records = make_records(8)
    for record in records:  # as a store cohort would carry them
        record.update({f"{seq}_sha256": f"{record['patient_id']}-{seq}" for seq in ("t1", "t1ce", "t2", "flair")})
        record["scan_sha256"] = ";".join(f"{seq}={record[seq + '_sha256']}" for seq in ("t1", "t1ce", "t2", "flair"))
    cohort = cohort_from_records(records, ["site"])
    base = _config(tiny_config, small_heads, method="mae", epochs=2)
    inline = pretrain(base, cohort, tmp_path / "inline", preprocess=fake_preprocess, progress=False)
    parallel = PretrainConfig(**{**base.__dict__, "num_workers": 2, "cache_dir": str(tmp_path / "cache")})
    other = pretrain(parallel, cohort, tmp_path / "workers", preprocess=fake_preprocess, progress=False)
    assert other.checkpoint_sha256 == inline.checkpoint_sha256
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 8
    with pytest.raises(ValueError, match="--cache-dir needs the scans' sha256, which patient P00"):
        pretrain(parallel, cohort_from_records(make_records(8), ["site"]), tmp_path / "nohash",
                 preprocess=fake_preprocess, progress=False)


def test_bf16_autocast_and_channels_last_paths_run_on_cpu(tmp_path, tiny_config, small_heads, fake_preprocess,
                                                          make_records):
    # The GPU recipe (bf16 autocast + channels-last-3d) exercised on the CPU backend;
    # the CUDA-only parts (GradScaler for fp16, nccl) are not covered here.
    cohort = cohort_from_records(make_records(4), ["site"])
    config = _config(tiny_config, small_heads, method="byol", epochs=1, precision="bf16", channels_last=True)
    result = pretrain(config, cohort, tmp_path / "byol", preprocess=fake_preprocess, progress=False)
    assert result.card["precision"] == "bfloat16" and result.card["channels_last"] is True
    assert all(v == v for v in result.history[-1]["group_loss"].values())  # finite, not NaN
    loaded = load_checkpoint(tmp_path / "byol")
    assert all(t.dtype in (torch.float32, torch.int64) for t in loaded.encoder.state_dict().values())


def test_groups_from_several_columns_with_unknown_values(make_records):
    records = make_records(4)
    for record, cohort in zip(records, ["GBM", "LGG", None, "GBM"]):
        record["cohort"] = cohort
    cohort = cohort_from_records(records, ["site", "cohort"])
    assert cohort.group_names == ("A|GBM", "A|LGG", "A|NA", "B|GBM")
    assert cohort.groups_summary() == {"A|GBM": 1, "A|LGG": 1, "A|NA": 1, "B|GBM": 1}
    assert cohort.group_index.tolist() == [0, 1, 2, 3]
    # the manifest hash follows the data, not the order of the records
    assert cohort_from_records(records[::-1], ["site", "cohort"]).manifest_sha256 == cohort.manifest_sha256
