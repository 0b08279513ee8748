"""The radiomics reference backbone: features against pyradiomics' own output and numpy,
the mask rule (tumour segmentation, else brain), the parameters file, the store rows and
their provenance, and bad input (named error, store unchanged)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

radiomics = pytest.importorskip("radiomics")

from extract_helpers import SEQUENCES, write_patient  # noqa: E402
from neurofeat.extract.radiomics import (  # noqa: E402
    MASK_RULE,
    RadiomicsCohortError,
    RadiomicsInputError,
    RadiomicsParams,
    RadiomicsParamsError,
    feature_names,
    inspect_patient,
    library_sha256,
    load_radiomics_params,
    patient_features,
    radiomics_backbone,
)
from neurofeat.runs.extract import BackboneSource, extract_dry_run, extract_run  # noqa: E402
from neurofeat.store import Store, write_tables  # noqa: E402

SHAPE = (20, 22, 18)
SPACING = (1.2, 1.0, 1.5)


def _affine(spacing=SPACING):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-10.0, -20.0, -5.0]
    return affine


def _save(path: Path, array: np.ndarray, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, _affine() if affine is None else affine), str(path))
    return path


def _seg(shape=SHAPE, *, empty=False) -> np.ndarray:
    """BraTS labels: 2 (oedema) around 1 (necrosis) and 4 (enhancing)."""
    labels = np.zeros(shape, np.uint8)
    if not empty:
        labels[6:14, 7:15, 5:12] = 2
        labels[8:12, 9:13, 7:10] = 4
        labels[9:11, 10:12, 8] = 1
    return labels


def _params(tmp_path: Path, text: str, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


SMALL_PARAMS = """
neurofeat:
  sequences: [t1, flair]
featureClass:
  shape: []
  firstorder: []
  glcm: []
  glszm: []
setting:
  binCount: 16
  additionalInfo: false
"""


# ---------------------------------------------------------------- against the library
def test_features_equal_pyradiomics_execute_on_a_phantom(tmp_path):
    """Our vector is, key by key, what ``RadiomicsFeatureExtractor.execute(image, mask)``
    returns for the same files, for every sequence (shape once), with the default parameters."""
    from radiomics import featureextractor

    rng = np.random.default_rng(7)
    paths = {}
    for k, seq in enumerate(SEQUENCES):
        image = (100 + 40 * k + rng.normal(0, 20, SHAPE)).astype(np.float32)
        paths[seq] = str(_save(tmp_path / f"{seq}.nii.gz", image))
    labels = _seg()
    seg = str(_save(tmp_path / "seg.nii.gz", labels))
    binary = str(_save(tmp_path / "binary.nii.gz", (labels > 0).astype(np.uint8)))

    params = load_radiomics_params()
    names = feature_names(params)
    vector, region = patient_features("P1", {**paths, "seg": seg}, params, names)
    assert region.mask == "tumour" and region.mask_voxels == int((labels > 0).sum())

    library = featureextractor.RadiomicsFeatureExtractor(dict(params.pyradiomics))
    expected: dict[str, float] = {}
    for seq in params.sequences:
        for key, value in library.execute(paths[seq], binary).items():
            if key.startswith("diagnostics_"):
                continue
            if "_shape_" in key:
                assert expected.setdefault(key, float(value)) == pytest.approx(float(value), rel=1e-12)
            else:
                expected[f"{seq}_{key}"] = float(value)
    assert set(expected) == set(names)
    ours = dict(zip(names, vector))
    for name in names:
        assert ours[name] == pytest.approx(expected[name], rel=1e-10, abs=1e-12), name
    # 14 shape + 4 x (18 first-order + 24 GLCM + 16 GLRLM + 16 GLSZM + 14 GLDM + 5 NGTDM)
    assert len(names) == 14 + 4 * (18 + 24 + 16 + 16 + 14 + 5)


def test_first_order_and_volume_against_numpy(tmp_path):
    """Hand-checkable phantom: first-order statistics of the voxels inside the mask, by numpy/scipy
    (IBSI definitions: population variance, Fisher-Pearson skewness, Pearson kurtosis)."""
    rng = np.random.default_rng(3)
    image = rng.gamma(4.0, 25.0, SHAPE).astype(np.float32)
    labels = _seg()
    paths = {seq: str(_save(tmp_path / f"{seq}.nii.gz", image)) for seq in ("t1", "flair")}
    seg = str(_save(tmp_path / "seg.nii.gz", labels))
    params = load_radiomics_params(_params(tmp_path, SMALL_PARAMS))
    names = feature_names(params)
    vector, region = patient_features("P1", {**paths, "seg": seg}, params, names)
    f = dict(zip(names, vector))
    x = image[labels > 0].astype(np.float64)
    n = x.size
    voxel_mm3 = float(np.prod(SPACING))
    assert region.mask_voxels == n and region.mask_ml == pytest.approx(n * voxel_mm3 / 1000)
    assert f["original_shape_VoxelVolume"] == pytest.approx(n * voxel_mm3, rel=1e-6)  # NIfTI zooms are float32
    for seq in ("t1", "flair"):
        fo = {k.split("_firstorder_")[1]: v for k, v in f.items() if k.startswith(f"{seq}_original_firstorder_")}
        assert fo["Mean"] == pytest.approx(x.mean(), rel=1e-6)
        assert fo["Energy"] == pytest.approx((x ** 2).sum(), rel=1e-6)
        assert fo["TotalEnergy"] == pytest.approx((x ** 2).sum() * voxel_mm3, rel=1e-6)
        assert fo["RootMeanSquared"] == pytest.approx(np.sqrt((x ** 2).mean()), rel=1e-6)
        assert fo["Variance"] == pytest.approx(x.var(), rel=1e-6)
        assert fo["Skewness"] == pytest.approx(stats.skew(x), rel=1e-5)
        assert fo["Kurtosis"] == pytest.approx(stats.kurtosis(x, fisher=False), rel=1e-5)
        assert fo["Minimum"] == pytest.approx(x.min(), rel=1e-6)
        assert fo["Maximum"] == pytest.approx(x.max(), rel=1e-6)
        assert fo["Median"] == pytest.approx(np.median(x), rel=1e-6)
        assert fo["10Percentile"] == pytest.approx(np.percentile(x, 10), rel=1e-6)
        assert fo["90Percentile"] == pytest.approx(np.percentile(x, 90), rel=1e-6)
        assert fo["MeanAbsoluteDeviation"] == pytest.approx(np.abs(x - x.mean()).mean(), rel=1e-6)
        assert fo["Range"] == pytest.approx(x.max() - x.min(), rel=1e-6)


def test_constant_cube(tmp_path):
    """A constant cube: mean = value, energy = n * value^2, variance and range 0, entropy 0."""
    image = np.zeros(SHAPE, np.float32)
    image[4:10, 4:10, 4:10] = 250.0
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:10, 4:10, 4:10] = 1
    paths = {seq: str(_save(tmp_path / f"{seq}.nii.gz", image)) for seq in ("t1", "flair")}
    params = load_radiomics_params(_params(tmp_path, SMALL_PARAMS.replace("  glcm: []\n  glszm: []\n", "")))
    names = feature_names(params)
    vector, _ = patient_features("P1", {**paths, "seg": str(_save(tmp_path / "seg.nii.gz", labels))}, params, names)
    f = dict(zip(names, vector))
    assert f["t1_original_firstorder_Mean"] == 250.0
    assert f["t1_original_firstorder_Energy"] == pytest.approx(216 * 250.0 ** 2, rel=1e-12)
    assert f["t1_original_firstorder_Variance"] == 0.0 and f["t1_original_firstorder_Range"] == 0.0
    assert f["t1_original_firstorder_Entropy"] == pytest.approx(0.0, abs=1e-12)
    assert f["original_shape_VoxelVolume"] == pytest.approx(216 * np.prod(SPACING))


# -------------------------------------------------------------------- the mask rule
def test_tumour_mask_when_segmented_brain_mask_otherwise(tmp_path):
    from radiomics import featureextractor

    paths = {k: str(v) for k, v in write_patient(tmp_path / "P1", "P1", seed=1, shape=SHAPE).items()}
    seg = str(_save(tmp_path / "P1" / "P1_seg.nii.gz", _seg()))
    params = load_radiomics_params(_params(tmp_path, SMALL_PARAMS))
    names = feature_names(params)
    tumour, tumour_region = patient_features("P1", {**paths, "seg": seg}, params, names)
    brain, brain_region = patient_features("P1", paths, params, names)
    assert (tumour_region.mask, tumour_region.mask_file) == ("tumour", seg)
    assert tumour_region.mask_voxels == int((_seg() > 0).sum())
    assert brain_region.mask == "brain" and brain_region.mask_file == f"{paths['t1']};{paths['flair']}"
    volumes = [nib.load(paths[s]).get_fdata() for s in ("t1", "flair")]
    brain_mask = (volumes[0] > 0) | (volumes[1] > 0)
    assert brain_region.mask_voxels == int(brain_mask.sum())
    # the brain vector is pyradiomics' output in that mask
    mask_path = str(_save(tmp_path / "brain.nii.gz", brain_mask.astype(np.uint8), nib.load(paths["t1"]).affine))
    library = featureextractor.RadiomicsFeatureExtractor(dict(params.pyradiomics))
    expected = {f"flair_{k}": float(v) for k, v in library.execute(paths["flair"], mask_path).items()
                if not k.startswith("diagnostics_") and "_shape_" not in k}
    got = dict(zip(names, brain))
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-10), key
    assert not np.allclose(tumour, brain)


def test_inspect_patient_names_patient_and_file(tmp_path):
    paths = {k: str(v) for k, v in write_patient(tmp_path / "P1", "P1", seed=1, shape=SHAPE).items()}
    params = load_radiomics_params(_params(tmp_path, SMALL_PARAMS))
    off_grid = str(_save(tmp_path / "P1" / "seg_small.nii.gz", _seg((20, 22, 16))))
    with pytest.raises(RadiomicsInputError, match=r"patient P1 \(.*seg_small\.nii\.gz\): the segmentation is not on "
                                                  r"the grid of .*P1_t1\.nii\.gz \(size \(20, 22, 16\), not"):
        inspect_patient("P1", {**paths, "seg": off_grid}, params)
    shifted = _affine()
    shifted[0, 3] += 3.0
    moved = str(_save(tmp_path / "P1" / "seg_moved.nii.gz", _seg(), shifted))
    with pytest.raises(RadiomicsInputError, match=r"seg_moved\.nii\.gz\): the segmentation is not on the grid .*origin"):
        inspect_patient("P1", {**paths, "seg": moved}, params)
    empty = str(_save(tmp_path / "P1" / "seg_empty.nii.gz", _seg(empty=True)))
    with pytest.raises(RadiomicsInputError, match=r"patient P1 \(.*seg_empty\.nii\.gz\): the segmentation labels no voxel"):
        inspect_patient("P1", {**paths, "seg": empty}, params)
    zeros = {s: str(_save(tmp_path / "Z" / f"{s}.nii.gz", np.zeros(SHAPE, np.float32))) for s in ("t1", "flair")}
    with pytest.raises(RadiomicsInputError, match=r"patient Z \(.*t1\.nii\.gz;.*flair\.nii\.gz\): no voxel is above 0"):
        inspect_patient("Z", zeros, params)
    with pytest.raises(RadiomicsInputError, match=r"patient P1 .*no registered scan for sequence\(s\) flair"):
        inspect_patient("P1", {"t1": paths["t1"]}, params)
    with pytest.raises(RadiomicsInputError, match=r"P1_t1\.nii\.gz\): t1 changed since ingest"):
        inspect_patient("P1", {"t1": (paths["t1"], "0" * 64), "flair": paths["flair"]}, params)


# --------------------------------------------------------------------- parameters
def test_default_parameters():
    params = load_radiomics_params()
    assert params.sequences == SEQUENCES
    assert params.pyradiomics["setting"]["binCount"] == 32
    assert set(params.pyradiomics["featureClass"]) == {"shape", "firstorder", "glcm", "glrlm", "glszm", "gldm",
                                                       "ngtdm"}
    assert params.source.endswith("neurofeat/data/radiomics.yaml")
    # the hash is of the parsed content (comments do not count), the mask rule included
    assert params.sha256() == hashlib.sha256(params.to_json().encode()).hexdigest()
    assert json.loads(params.to_json())["mask_rule"] == MASK_RULE


def test_parameter_hash_follows_content_not_formatting(tmp_path):
    a = load_radiomics_params(_params(tmp_path, SMALL_PARAMS, "a.yaml"))
    b = load_radiomics_params(_params(tmp_path, "# a comment\n" + SMALL_PARAMS, "b.yaml"))
    c = load_radiomics_params(_params(tmp_path, SMALL_PARAMS.replace("binCount: 16", "binCount: 8"), "c.yaml"))
    as_json = _params(tmp_path, json.dumps(a.to_dict()), "d.json")
    assert a.sha256() == b.sha256() == load_radiomics_params(as_json).sha256()
    assert a.file_sha256 != b.file_sha256
    assert c.sha256() != a.sha256()
    assert feature_names(a)[0] == "original_shape_Elongation"
    assert all(n.startswith(("original_shape_", "t1_", "flair_")) for n in feature_names(a))


@pytest.mark.parametrize(("text", "match"), [
    ("setting:\n  binWidht: 5\n", r"unknown key 'binWidht' in 'setting'\. Did you mean 'binWidth'\?"),
    ("settings:\n  binCount: 5\n", r"unknown section 'settings'\. Did you mean 'setting'\?"),
    ("neurofeat:\n  sequence: [t1]\n", r"unknown key 'sequence' in 'neurofeat'\. Did you mean 'sequences'\?"),
    ("voxelSetting:\n  kernelRadius: 2\n", r"unknown section 'voxelSetting'\. Voxel-based .* not supported"),
    ("featureClass:\n  glcmx: []\n", r"Feature Class glcmx is not recognized"),
    ("setting:\n  binCount: -3\n", r".*'-3'.*Path: '/setting/binCount'"),
    ("neurofeat:\n  sequences: [t1, dwi]\n", r"neurofeat\.sequences must be distinct names among t1, t1ce, t2, flair"),
    ("setting: [1, 2\n", r"not valid YAML"),
    ("- a\n- b\n", r"expected a mapping of sections"),
])
def test_bad_parameters_are_named(tmp_path, text, match):
    path = _params(tmp_path, text, "bad.yaml")
    with pytest.raises(RadiomicsParamsError, match=rf"radiomics parameters .*bad\.yaml: {match}"):
        load_radiomics_params(path)


def test_backbone_identity():
    backbone = radiomics_backbone()
    assert backbone.checkpoint_sha256 == library_sha256()
    assert backbone.preprocess_sha256 == backbone.params.sha256()
    assert backbone.architecture["features"] == list(backbone.feature_names)
    assert backbone.architecture["library_version"] == radiomics.__version__
    assert isinstance(backbone.params, RadiomicsParams) and backbone.embedding_dim == 386


# ---------------------------------------------------------------------- the store
def _store(root: Path, *, n: int = 4, segmented=(0, 1), seg_of=None) -> tuple[Store, list[str]]:
    """A store of *n* patients; those in *segmented* have a registered segmentation."""
    import pyarrow as pa

    store = Store.open(root / "store", create=True)
    patients, scans, ids = [], [], []
    for i in range(n):
        pid = f"P{i:03d}"
        ids.append(pid)
        paths = write_patient(root / "images" / pid, pid, seed=i, shape=SHAPE, spacing=SPACING)
        if i in segmented:
            labels = (seg_of or {}).get(pid, _seg())
            paths["seg"] = _save(root / "images" / pid / f"{pid}_seg.nii.gz", labels)
        patients.append({"patient_id": pid, "site": "AB"[i % 2]})
        for seq, path in paths.items():
            scans.append({"patient_id": pid, "sequence": seq, "path": str(path.absolute()),
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    write_tables(store, {"patients": pa.Table.from_pylist(patients), "scans": pa.Table.from_pylist(scans)})
    return store, ids


def _store_files(store: Store) -> dict[str, bytes]:
    root = Path(store.root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".staging/locks" not in p.relative_to(root).as_posix()}


def test_extract_run_stores_features_with_provenance(tmp_path):
    store, ids = _store(tmp_path)
    params_path = _params(tmp_path, SMALL_PARAMS)
    source = BackboneSource("radiomics", radiomics_params=params_path)
    run = extract_run(store, source, seed=5)
    backbone = radiomics_backbone("radiomics", params_path)
    assert run.result.n_written == 4 and run.result.n_failed == 0
    files = sorted((Path(store.root) / "embeddings" / "backbone=radiomics" / "perturbation=none").glob("*.parquet"))
    table = pq.read_table(files).sort_by("patient_id")
    assert table["patient_id"].to_pylist() == ids
    assert set(table["checkpoint_sha256"].to_pylist()) == {library_sha256()}
    assert set(table["preprocess_sha256"].to_pylist()) == {backbone.params.sha256()}
    assert set(table["seed"].to_pylist()) == {5}
    meta = json.loads(pq.read_schema(files[0]).metadata[b"neurofeat"])
    architecture = json.loads(meta["architecture"])
    assert architecture["features"] == list(backbone.feature_names) and meta["dim"] == backbone.embedding_dim
    assert architecture["sequences"] == ["t1", "flair"] and architecture["mask_rule"] == MASK_RULE
    # each stored vector is the patient's features (float32), in the mask the rule picks
    regions = run.tables["radiomics"].set_index("patient_id")
    assert regions["mask"].to_dict() == {"P000": "tumour", "P001": "tumour", "P002": "brain", "P003": "brain"}
    assert regions.loc["P000", "mask_file"].endswith("P000_seg.nii.gz")
    stored = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    for row, pid in enumerate(ids):
        scans = {s: str(tmp_path / "images" / pid / f"{pid}_{s}.nii.gz") for s in ("t1", "flair")}
        if regions.loc[pid, "mask"] == "tumour":
            scans["seg"] = str(tmp_path / "images" / pid / f"{pid}_seg.nii.gz")
        vector, _ = patient_features(pid, scans, backbone.params, backbone.feature_names)
        np.testing.assert_array_equal(stored[row], vector.astype(np.float32))
    # the run log names the parameters file and its hashes
    assert run.params["radiomics"]["params_file"] == str(params_path)
    assert run.params["radiomics"]["params_file_sha256"] == hashlib.sha256(params_path.read_bytes()).hexdigest()
    assert run.info is not None
    from neurofeat.store import connect

    view = connect(store.root).sql("select patient_id, mask from run_radiomics order by patient_id").fetchall()
    assert view == [("P000", "tumour"), ("P001", "tumour"), ("P002", "brain"), ("P003", "brain")]
    # a rerun has nothing to do; other parameters under the same name are refused without --replace
    again = extract_run(store, source)
    assert again.result.n_written == 0 and again.result.per_perturbation[0].n_already_done == 4
    from neurofeat.store import CheckpointMismatchError

    other = _params(tmp_path, SMALL_PARAMS.replace("binCount: 16", "binCount: 8"), "other.yaml")
    with pytest.raises(CheckpointMismatchError, match="preprocessing"):
        extract_run(store, BackboneSource("radiomics", radiomics_params=other))
    renamed = extract_run(store, BackboneSource("radiomics", radiomics_params=other, store_as="radiomics-bc8"))
    assert renamed.result.backbone == "radiomics-bc8" and renamed.result.n_written == 4


def _add_seg_row(store: Store, pid: str, path: Path) -> None:
    """Register a segmentation behind ingest's back (as an older store or a hand edit could)."""
    import pyarrow as pa

    write_tables(store, {"scans": pa.Table.from_pylist([{
        "patient_id": pid, "sequence": "seg", "path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}])})


@pytest.mark.parametrize(("labels", "match"), [
    (_seg((20, 22, 16)), r"P002_seg\.nii\.gz\): the segmentation is not on the grid .*size \(20, 22, 16\)"),
    (_seg(empty=True), r"P002_seg\.nii\.gz\): the segmentation labels no voxel"),
])
def test_bad_segmentation_is_named_and_nothing_is_stored(tmp_path, labels, match):
    store, _ = _store(tmp_path)
    extract_run(store, BackboneSource("random", arch="resnet10", widen_factor=0.25, input_size=16, spacing=3.0))
    path = _save(tmp_path / "images" / "P002" / "P002_seg.nii.gz", labels)
    _add_seg_row(store, "P002", path)
    before = _store_files(store)
    params = _params(tmp_path, SMALL_PARAMS)
    with pytest.raises(RadiomicsCohortError, match=r"(?s)^1 patient\(s\) cannot be used, nothing was stored.*\n  "
                                                   r"patient P002 \(.*" + match) as info:
        extract_run(store, BackboneSource("radiomics", radiomics_params=params))
    (problem,) = info.value.problems
    assert problem.patient_id == "P002" and problem.path == str(path)
    assert _store_files(store) == before
    report = extract_dry_run(store, BackboneSource("radiomics", radiomics_params=params))
    assert not report.ok and [pid for pid, _ in report.problems] == ["P002"]
    assert _store_files(store) == before


def test_unknown_parameter_key_is_named_and_nothing_is_stored(tmp_path):
    store, _ = _store(tmp_path, n=2)
    before = _store_files(store)
    bad = _params(tmp_path, SMALL_PARAMS.replace("binCount: 16", "binCount: 16\n  binWidht: 5"), "bad.yaml")
    with pytest.raises(RadiomicsParamsError, match=r"bad\.yaml: unknown key 'binWidht' in 'setting'"):
        extract_run(store, BackboneSource("radiomics", radiomics_params=bad))
    assert _store_files(store) == before


def test_a_patient_the_library_cannot_describe_is_recorded(tmp_path):
    """A one-voxel tumour passes the checks but pyradiomics refuses it (minimumROIDimensions):
    that patient is recorded in extract_failures, the others are stored."""
    one_voxel = np.zeros(SHAPE, np.uint8)
    one_voxel[10, 10, 9] = 1
    store, _ = _store(tmp_path, n=3, segmented=(0, 1), seg_of={"P001": one_voxel})
    run = extract_run(store, BackboneSource("radiomics", radiomics_params=_params(tmp_path, SMALL_PARAMS)))
    assert run.result.n_written == 2 and [f[1] for f in run.result.failures] == ["P001"]
    assert "P001" in run.result.failures[0][2] and "pyradiomics failed" in run.result.failures[0][2]
    from neurofeat.store import connect

    failed = connect(store.root).sql("select patient_id from extract_failures").fetchall()
    assert failed == [("P001",)]


def test_options_that_do_not_apply(tmp_path):
    from neurofeat.extract.backbone import ExtractionError

    store, _ = _store(tmp_path, n=1)
    for source, match in [
        (BackboneSource("radiomics", input_size=32), r"--input-size/--spacing do not apply to --backbone radiomics"),
        (BackboneSource("radiomics", arch="resnet10"), r"--arch/--widen-factor only apply to --backbone random"),
        (BackboneSource("dino", radiomics_params="x.yaml"), r"--radiomics-params only applies to --backbone radiomics"),
    ]:
        with pytest.raises(ExtractionError, match=match):
            extract_run(store, source)
    with pytest.raises(ExtractionError, match=r"--perturb does not apply to --backbone radiomics"):
        extract_run(store, BackboneSource("radiomics"), perturb="gibbs:0.2")


def test_cli_extract_radiomics(tmp_path):
    from typer.testing import CliRunner

    from neurofeat.cli import app

    store, _ = _store(tmp_path, n=2)
    params = _params(tmp_path, SMALL_PARAMS)
    result = CliRunner().invoke(app, ["extract", "--backbone", "radiomics", "--radiomics-params", str(params),
                                      "--store", str(store.root), "--no-progress"])
    assert result.exit_code == 0, result.output
    n_features = radiomics_backbone("radiomics", params).embedding_dim
    assert n_features == 14 + 2 * (18 + 24 + 16)
    assert f"radiomics: {n_features} features per patient; region: 2 tumour segmentation(s), 0 brain mask(s)" in \
        " ".join(result.output.split())
    bad = _params(tmp_path, "setting:\n  binWidht: 5\n", "bad.yaml")
    result = CliRunner().invoke(app, ["extract", "--backbone", "radiomics", "--radiomics-params", str(bad),
                                      "--store", str(store.root), "--name", "r2"])
    assert result.exit_code == 1 and "unknown key 'binWidht' in 'setting'" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_worker_processes_give_the_same_rows(tmp_path):
    store, _ = _store(tmp_path, n=3, segmented=(0,))
    params = _params(tmp_path, SMALL_PARAMS)
    extract_run(store, BackboneSource("radiomics", radiomics_params=params, store_as="serial"))
    pooled = extract_run(store, BackboneSource("radiomics", radiomics_params=params, store_as="pooled"), workers=2)
    assert pooled.params["workers"] == 2 and pooled.result.n_written == 3
    tables = {}
    for name in ("serial", "pooled"):
        files = sorted((Path(store.root) / "embeddings" / f"backbone={name}").glob("perturbation=none/*.parquet"))
        tables[name] = pq.read_table(files).sort_by("patient_id")
    assert tables["serial"]["patient_id"].equals(tables["pooled"]["patient_id"])
    assert tables["serial"]["embedding"].equals(tables["pooled"]["embedding"])


def test_dry_run_checks_and_writes_nothing(tmp_path):
    store, _ = _store(tmp_path, n=3, segmented=(1,))
    before = _store_files(store)
    report = extract_dry_run(store, BackboneSource("radiomics", radiomics_params=_params(tmp_path, SMALL_PARAMS)))
    assert report.ok and report.todo == {"none": 3} and report.embedding_dim == 14 + 2 * (18 + 24 + 16)
    assert report.checkpoint_sha256 == library_sha256() and report.input_shape == (2,)
    assert _store_files(store) == before


def test_missing_library_is_named(monkeypatch):
    import sys

    from neurofeat.extract.radiomics import RadiomicsUnavailableError

    monkeypatch.setitem(sys.modules, "radiomics", None)
    with pytest.raises(RadiomicsUnavailableError, match=r"needs pyradiomics .*pip install 'neurofeat\[radiomics\]'"):
        load_radiomics_params()
