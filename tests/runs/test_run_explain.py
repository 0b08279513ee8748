"""`explain_run`: a tiny store with images, a tiny checkpoint and its embeddings."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("torch")
nib = pytest.importorskip("nibabel")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extract"))
from extract_helpers import make_backbone, make_store  # noqa: E402

from trust_helpers import check_stored  # noqa: E402

from neurofeat.runs import PatientImagesError, explain_run  # noqa: E402
from neurofeat.store import append_embeddings, new_run_id, write_tables  # noqa: E402


@pytest.fixture(scope="module")
def explain_store(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("explain")
    store, ids = make_store(root, n=8)
    models = root / "models"
    make_backbone(models, "tiny")
    from neurofeat.extract.backbone import resolve_extraction_backbone

    backbone = resolve_extraction_backbone("tiny", models_dir=models)
    rng = np.random.default_rng(0)
    labels = np.array([i % 2 == 0 for i in range(len(ids))])
    write_tables(store, {"clinical": pa.table({"patient_id": ids, "idh1": labels,
                                               "os_days": np.full(len(ids), 300.0),
                                               "os_event": np.ones(len(ids), bool)})})
    X = rng.normal(size=(len(ids), backbone.embedding_dim)).astype(np.float32)
    X[labels] += 0.5
    append_embeddings(store, "tiny", ids, X, checkpoint_sha256=backbone.checkpoint_sha256,
                      preprocess_sha256=backbone.preprocess_sha256,
                      run_id=new_run_id("extract"))
    append_embeddings(store, "radiomics", ids, X[:, :10], checkpoint_sha256="cd" * 32,
                      preprocess_sha256="ef" * 32, run_id="import-20260101T000000-abcdef")
    # a tumour mask next to P000's scans (as the synthetic cohort writes <id>_seg.nii.gz)
    t1ce = nib.load(str(root / "images" / "P000" / "P000_t1ce.nii.gz"))
    seg = np.zeros(t1ce.shape, np.uint8)
    seg[12:20, 14:22, 10:16] = 4
    nib.save(nib.Nifti1Image(seg, t1ce.affine), str(root / "images" / "P000" / "P000_seg.nii.gz"))
    # a registered patient without any scan
    write_tables(store, {"patients": pa.table({"patient_id": ["P900"], "site": ["A"]})})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {"store": store, "models": models, "root": root, "t1ce": t1ce}
    torch.set_num_threads(threads)


def test_explain_run_writes_table_figure_and_nifti(explain_store):
    run = explain_run(explain_store["store"], "tiny", "idh1", "P000",
                      methods=["gradcam", "occlusion"], models_dir=explain_store["models"],
                      n_random=30)
    check_stored(run.info, "explain", run.tables)
    assert set(run.info.figures) == {"gradcam_montage", "occlusion_montage"}
    table = run.tables["attribution"]
    assert list(table["method"]) == ["gradcam", "occlusion"]
    assert (table["mask_source"] == "segmentation:P000_seg.nii.gz").all()
    assert table["fraction_inside"].between(0, 1).all() and table["n_random"].eq(30).all()
    assert table["checkpoint_sha256"].notna().all() and table["preprocess_sha256"].notna().all()
    assert table["layer"].iloc[0].startswith("encoder.layer")
    heat = nib.load(str(run.heatmaps["gradcam"]))
    t1ce = explain_store["t1ce"]
    assert heat.shape == t1ce.shape and np.allclose(heat.affine, t1ce.affine)
    assert np.asarray(heat.dataobj).max() <= 1.0 + 1e-6
    assert run.params["embedding_cosine_to_stored"] is not None


def test_without_a_mask_fraction_is_null(explain_store):
    run = explain_run(explain_store["store"], "tiny", "idh1", "P001",
                      models_dir=explain_store["models"], write=False)
    row = run.tables["attribution"].iloc[0]
    assert row["mask_source"] == "none" and row["fraction_inside"] is None


def test_imported_backbone_has_no_encoder(explain_store):
    from neurofeat.extract.explain import ExplainError

    with pytest.raises(ExplainError, match="no image encoder to explain"):
        explain_run(explain_store["store"], "radiomics", "idh1", "P000",
                    models_dir=explain_store["models"], write=False)


def test_patient_without_images(explain_store):
    with pytest.raises(PatientImagesError, match="patient P900 has no images registered"):
        explain_run(explain_store["store"], "tiny", "idh1", "P900",
                    models_dir=explain_store["models"], write=False)


def test_unknown_patient_and_survival_task(explain_store):
    with pytest.raises(ValueError, match="not registered"):
        explain_run(explain_store["store"], "tiny", "idh1", "P999",
                    models_dir=explain_store["models"], write=False)
    with pytest.raises(ValueError, match="survival task"):
        explain_run(explain_store["store"], "tiny", "os", "P000",
                    models_dir=explain_store["models"], write=False)
