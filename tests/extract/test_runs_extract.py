"""`neurofeat.runs.extract`: the run the CLI calls returns exactly the table it stores;
the shared device resolver and file hash behave as their callers expect."""

from __future__ import annotations

import hashlib

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pq = pytest.importorskip("pyarrow.parquet")

from neurofeat.extract.backbone import ExtractionError  # noqa: E402
from neurofeat.extract.devices import DeviceError, resolve_device  # noqa: E402
from neurofeat.hashing import sha256_file  # noqa: E402
from neurofeat.runs.extract import BackboneSource, extract_dry_run, extract_run  # noqa: E402
from neurofeat.store.schema import RUN_TABLE_SCHEMAS  # noqa: E402


def test_extract_run_returns_the_table_it_stores(cohort):
    store, models = cohort["store"], cohort["models"]
    run = extract_run(store, BackboneSource("tiny", models_dir=models), perturb="none,bias:0.2", device="cpu",
                      workers=0)
    assert run is not None and run.info is not None and run.log_error is None
    assert run.result.n_written == 12 and run.params["perturbations"] == ["none", "bias-0.2"]
    stored = pq.read_table(run.info.path / "extraction.parquet")
    assert stored.schema.names == RUN_TABLE_SCHEMAS["extract"]["extraction"].names
    returned = run.tables["extraction"]
    assert stored.to_pandas()[list(returned.columns)].equals(returned)


def test_extract_dry_run_writes_nothing(cohort):
    store, models = cohort["store"], cohort["models"]
    report = extract_dry_run(store, BackboneSource("tiny", models_dir=models))
    assert report.ok and report.todo == {"none": 6}
    assert not store.embeddings_dir.exists() or not list(store.embeddings_dir.rglob("*.parquet"))


def test_backbone_source_refuses_sizes_for_a_neurofeat_backbone(cohort):
    with pytest.raises(ExtractionError, match="--input-size/--spacing only apply to --checkpoint"):
        BackboneSource("tiny", models_dir=cohort["models"], input_size=64).resolve()


@pytest.mark.parametrize("device", ["tpu", "mps", "gpu0"])
def test_unknown_devices_are_refused_by_name(device):
    with pytest.raises(DeviceError, match=f"--device must be auto, cpu or cuda, got '{device}'"):
        resolve_device(device)


def test_cpu_and_auto_without_cuda():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(DeviceError, match="no CUDA device is visible"):
            resolve_device("cuda")


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 9000  # 2.3 MB: three 1 MiB chunks, or 563 of 4096 bytes
    path.write_bytes(data)
    # independent reference: hashlib over the whole byte string at once
    assert sha256_file(path) == sha256_file(path, chunk_size=4096) == hashlib.sha256(data).hexdigest()
