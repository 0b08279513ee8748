"""Rendered cohorts: valid NIfTI, visible tumour, reproducible bytes, findable sites."""

from __future__ import annotations

import filecmp

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofeat.synth import SEQUENCES, generate_cohort, grid_affine, render_patient, simulate_tables

SIZE, SPACING = 32, 4.0  # as in conftest.small_cohort


def test_manifest_and_files(small_cohort):
    manifest = pd.read_csv(small_cohort.manifest_path)
    assert manifest.columns.tolist() == ["patient_id", "site", "t1", "t1ce", "t2", "flair", "seg"]
    assert len(manifest) == 40
    assert manifest["patient_id"].iloc[0] == "siteA-0001"
    row = manifest.iloc[0]
    assert row["t1ce"] == "images/siteA-0001/siteA-0001_t1ce.nii.gz"
    for sequence in SEQUENCES:
        assert all((small_cohort.root / p).is_file() for p in manifest[sequence])
    assert small_cohort.image_path("siteA-0001", "seg").is_file()
    assert row["seg"] == "images/siteA-0001/siteA-0001_seg.nii.gz"


def test_images_are_valid_nifti_with_the_grid_affine(small_cohort):
    expected = grid_affine(SIZE, SPACING)
    for sequence in (*SEQUENCES, "seg"):
        image = nib.load(small_cohort.image_path("siteB-0003", sequence))
        assert image.shape == (SIZE, SIZE, SIZE)
        np.testing.assert_allclose(image.affine, expected)
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
        assert image.header.get_zooms() == (SPACING, SPACING, SPACING)
        assert image.get_data_dtype() == (np.uint8 if sequence == "seg" else np.int16)
    t1 = np.asarray(nib.load(small_cohort.image_path("siteB-0003", "t1")).dataobj)
    assert t1.min() == 0 and t1.max() > 300
    assert 0.3 < (t1 > 0).mean() < 0.9  # skull-stripped brain in the field of view


def _means(cohort, patient_id: str) -> dict[str, dict[int, float]]:
    seg = np.asarray(nib.load(cohort.image_path(patient_id, "seg")).dataobj)
    out = {}
    for sequence in SEQUENCES:
        image = np.asarray(nib.load(cohort.image_path(patient_id, sequence)).dataobj).astype(float)
        normal = (seg == 0) & (image > 0)
        out[sequence] = {label: image[seg == label].mean() if (seg == label).any() else np.nan for label in (1, 2, 4)}
        out[sequence][0] = np.median(image[normal])
    return out


def _relative_enhancement(means: dict[str, dict[int, float]]) -> float:
    """(T1ce tumour / T1ce normal) / (T1 tumour / T1 normal) in the solid tumour (label 4)."""
    return (means["t1ce"][4] / means["t1ce"][0]) / (means["t1"][4] / means["t1"][0])


def test_tumour_is_bright_on_t1ce_rim_and_flair_oedema(small_cohort):
    truth = small_cohort.truth
    solid = truth["enhancing_ml"] > 2
    enhancing = truth[solid & (truth["enhancement"] > 0.6)]["patient_id"]
    non_enhancing = truth[solid & (truth["enhancement"] < 0.3)]["patient_id"]
    oedematous = truth[truth["oedema_ml"] > 5]["patient_id"]
    assert len(enhancing) >= 5 and len(non_enhancing) >= 3 and len(oedematous) >= 10
    enhancement = [_relative_enhancement(_means(small_cohort, p)) for p in enhancing]
    no_enhancement = [_relative_enhancement(_means(small_cohort, p)) for p in non_enhancing]
    assert np.median(enhancement) > 1.4
    assert np.median(enhancement) > np.median(no_enhancement) + 0.25
    oedema = [_means(small_cohort, p) for p in oedematous]
    assert np.median([m["flair"][2] / m["flair"][0] for m in oedema]) > 1.3  # bright on FLAIR
    assert np.median([m["t2"][2] / m["t2"][0] for m in oedema]) > 1.2  # and on T2
    assert np.median([m["t1"][2] / m["t1"][0] for m in oedema]) < 1.0  # dark on T1


def test_segmentation_volumes_match_the_truth(small_cohort):
    truth = small_cohort.truth.set_index("patient_id")
    voxel_ml = SPACING**3 / 1000
    for patient_id in truth.index[::8]:
        seg = np.asarray(nib.load(small_cohort.image_path(patient_id, "seg")).dataobj)
        tumour_ml = (seg > 0).sum() * voxel_ml
        expected = truth.loc[patient_id, ["necrosis_ml", "enhancing_ml", "oedema_ml"]].sum()
        assert tumour_ml == pytest.approx(expected, rel=0.3, abs=3 * voxel_ml)


def test_truth_table_holds_the_latents(small_cohort):
    truth = pd.read_parquet(small_cohort.truth_path)
    for column in ("idh1_true", "p_idh1", "enhancement_z", "enhancement_z_effect", "centre_x_mm", "os_log_hazard",
                   "event_days", "necrosis_ml", "enhancing_ml", "oedema_ml", "acq_noise_std", "warp_scale_x"):
        assert column in truth.columns, column
    assert len(truth) == 40 and truth["patient_id"].tolist() == small_cohort.manifest["patient_id"].tolist()


def test_same_seed_same_bytes(small_cohort, tmp_path):
    again = generate_cohort(tmp_path / "again", n=40, n_sites=3, seed=5, size=SIZE, spacing=SPACING, site_effect=1.0)
    comparison = filecmp.dircmp(small_cohort.root, again.root)
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only
    for patient_id in ("siteA-0001", "siteC-0008"):
        for sequence in (*SEQUENCES, "seg"):
            a = small_cohort.image_path(patient_id, sequence).read_bytes()
            b = again.image_path(patient_id, sequence).read_bytes()
            assert a == b, (patient_id, sequence)
    assert (small_cohort.root / "truth.parquet").read_bytes() == (again.root / "truth.parquet").read_bytes()
    assert (small_cohort.root / "clinical.csv").read_bytes() == (again.root / "clinical.csv").read_bytes()


def test_patients_do_not_depend_on_rendering_order(small_cohort, tmp_path):
    # Each patient has its own random stream, so workers may render in any order.
    from neurofeat.synth.cohort import _PatientJob, _render_and_write

    tables = simulate_tables(40, n_sites=3, seed=5, site_effect=1.0)
    protocols = {p.site: p for p in tables.protocols}
    (tmp_path / "images").mkdir()
    for index in (39, 17):  # out of order, alone
        row = tables.truth.iloc[index]
        job = _PatientJob(index, row, protocols[row["site"]], SIZE, SPACING, 5, tmp_path / "images", False)
        record, _ = _render_and_write(job)
        for sequence in SEQUENCES:
            assert (tmp_path / record[sequence]).read_bytes() == (small_cohort.root / record[sequence]).read_bytes()


@pytest.mark.slow
def test_worker_processes_write_the_same_bytes(small_cohort, tmp_path):
    # The CLI path: a fresh process (no torch loaded) forks two workers.
    import subprocess
    import sys

    out = tmp_path / "parallel"
    command = [sys.executable, "-m", "neurofeat", "synth", "--out", str(out), "--n", "40", "--sites", "3", "--seed", "5",
               "--size", str(SIZE), "--spacing", str(SPACING), "--jobs", "2"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    comparison = filecmp.dircmp(small_cohort.root, out)
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only
    for patient_id in small_cohort.manifest["patient_id"]:
        for sequence in SEQUENCES:
            assert (out / "images" / patient_id / f"{patient_id}_{sequence}.nii.gz").read_bytes() == small_cohort.image_path(patient_id, sequence).read_bytes()


def test_other_seed_other_images(small_cohort, tmp_path):
    other = generate_cohort(tmp_path / "other", n=3, n_sites=3, seed=6, size=SIZE, spacing=SPACING)
    assert other.image_path("siteA-0001", "t1").read_bytes() != small_cohort.image_path("siteA-0001", "t1").read_bytes()


def test_existing_cohort_is_not_overwritten_silently(small_cohort):
    with pytest.raises(FileExistsError, match="already holds a cohort .*overwrite"):
        generate_cohort(small_cohort.root, n=3, size=SIZE, spacing=SPACING)


def test_bad_grid_is_refused(tmp_path):
    with pytest.raises(ValueError, match="size is 8; use an integer in 16..256"):
        generate_cohort(tmp_path / "x", n=3, size=8)
    with pytest.raises(ValueError, match="spacing is 0.1 mm"):
        generate_cohort(tmp_path / "x", n=3, spacing=0.1)


def _intensity_features(images: dict[str, np.ndarray]) -> list[float]:
    features = []
    for sequence in SEQUENCES:
        image = images[sequence].astype(np.float64)
        brain = image[image > 0]
        p5, p50, p95 = np.percentile(brain, [5, 50, 95])
        # high-frequency energy (noise, ringing, blur): neighbour differences inside the brain
        inside = (image[1:] > 0) & (image[:-1] > 0)
        diff = np.abs(np.diff(image, axis=0))[inside]
        features += [brain.mean(), brain.std(), p5, p50, p95, np.median(diff)]
    return features


def _site_balanced_accuracy(site_effect: float) -> float:
    tables = simulate_tables(60, n_sites=3, seed=21, site_effect=site_effect)
    protocols = {p.site: p for p in tables.protocols}
    rows = []
    for i, (_, row) in enumerate(tables.truth.iterrows()):
        rendered = render_patient(row, protocols[row["site"]], size=SIZE, spacing=SPACING, rng=np.random.default_rng([21, i]))
        rows.append(_intensity_features(rendered.images))
    X = np.asarray(rows)
    y = tables.truth["site"].to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
    predicted = cross_val_predict(model, X, y, cv=StratifiedKFold(4, shuffle=True, random_state=0))
    return balanced_accuracy_score(y, predicted)


@pytest.mark.slow
def test_site_is_findable_only_with_a_site_effect():
    # Chance balanced accuracy for 3 sites is 1/3.
    assert _site_balanced_accuracy(1.5) > 0.85
    assert _site_balanced_accuracy(0.0) < 0.55


def test_latent_enhancement_is_measurable_in_the_images(small_cohort):
    # The truth reaches the voxels: relative T1ce enhancement measured from the images
    # tracks the latent trait (Spearman, scipy) and is lower in IDH-mutant tumours.
    from scipy import stats

    truth = small_cohort.truth
    measured = []
    for patient_id in truth["patient_id"]:
        seg = np.asarray(nib.load(small_cohort.image_path(patient_id, "seg")).dataobj)
        measured.append(_relative_enhancement(_means(small_cohort, patient_id)) if (seg == 4).sum() >= 3 else np.nan)
    measured = np.asarray(measured)
    ok = ~np.isnan(measured)
    assert ok.sum() >= 30
    assert stats.spearmanr(measured[ok], truth.loc[ok, "enhancement_z"]).statistic > 0.6
    idh = truth["idh1_true"].to_numpy()
    assert np.median(measured[ok & idh]) < np.median(measured[ok & ~idh])
