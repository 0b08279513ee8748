"""Orchestration of the synthetic cohort: tables, images and the files on disk.

:func:`simulate_tables` draws everything but the images (fast; use it to test label
logic on thousands of patients).  :func:`generate_cohort` adds the images and writes::

    DIR/images/<patient_id>/<patient_id>_{t1,t1ce,t2,flair}.nii.gz   int16, RAS+ affine
    DIR/images/<patient_id>/<patient_id>_seg.nii.gz                  BraTS labels 0/1/2/4
    DIR/manifest.csv     patient_id, site, t1, t1ce, t2, flair, seg (paths relative to DIR;
                         seg empty when segmentations are not written)
    DIR/clinical.csv     patient_id, site + canonical columns (true/false, unknown empty)
    DIR/truth.parquet    every latent variable (labels without NULLs, traits, effects,
                         probabilities, survival times, tumour volumes, warp, protocol)
    DIR/sites.csv        the acquisition protocol of each site
    DIR/oracle_traits.csv  patient_id + the six latent imaging traits: a ready-to-import
                         "oracle" backbone (cheating: the ceiling an encoder cannot beat)
    DIR/synth.json       the parameters of the run and, with a shortcut, its card
                         (which effects are causal, which spurious, expected AUCs)

Randomness: one seed; the label, survival, protocol and per-patient image streams are
``numpy.random.default_rng([seed, stream, index])``, so the same seed gives the same
bytes (gzip with mtime 0 and no file name) and a patient's images do not depend on the
order in which patients are rendered.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from neurofeat.synth.acquisition import SiteProtocol, acquire, protocols_frame, site_protocols
from neurofeat.synth.anatomy import (
    AnatomyWarp,
    grid_affine,
    grid_coordinates_mm,
    load_mni152_tissues,
    prime_template_cache,
    warp_tissues,
)
from neurofeat.synth.labels import MARKERS, TRAITS, GenerativeModel, simulate_labels, site_names
from neurofeat.synth.shortcut import Shortcut, draw_scanners, scanner_protocol, shortcut_card
from neurofeat.synth.survival import WeibullSurvivalModel, simulate_survival
from neurofeat.synth.tumour import SEQUENCES, compose_contrasts, tumour_compartments, tumour_spec

__all__ = [
    "CLINICAL_COLUMNS",
    "MANIFEST_COLUMNS",
    "RenderedPatient",
    "SynthCohort",
    "SynthTables",
    "clinical_csv_text",
    "generate_cohort",
    "render_patient",
    "simulate_tables",
    "write_nifti_gz",
]

#: Columns of clinical.csv, in order.
CLINICAL_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "site",
    "age",
    "sex",
    "grade",
    "histology",
    *MARKERS,
    "ki67",
    "p53_ihc",
    "os_days",
    "os_event",
)

#: Columns of manifest.csv, in order (``seg``: the tumour label map, which ingest registers
#: as an optional sequence; empty when the cohort was written without segmentations).
MANIFEST_COLUMNS: tuple[str, ...] = ("patient_id", "site", *SEQUENCES, "seg")

_STREAM_LABELS, _STREAM_SURVIVAL, _STREAM_SITES, _STREAM_IMAGES, _STREAM_SCANNERS = 1, 2, 3, 4, 5


def _check_int(name: str, value: int, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or int(value) != value or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} is {value!r}; use an integer {bound}.")
    return int(value)


@dataclass(frozen=True)
class SynthTables:
    """The tables of a synthetic cohort (no images).

    Attributes
    ----------
    truth : pandas.DataFrame, shape (n, ...)
        Every latent variable, one row per patient sorted by ``patient_id``.
    clinical : pandas.DataFrame, shape (n, len(CLINICAL_COLUMNS))
        What a site would report: canonical columns, nullable dtypes, NULLs.
    protocols : tuple of SiteProtocol
        The acquisition of each site.
    seed : int
        The cohort seed.
    """

    truth: pd.DataFrame
    clinical: pd.DataFrame
    protocols: tuple[SiteProtocol, ...]
    seed: int

    def summary(self) -> str:
        """One line per site: patients, IDH1-mutant, grade 4, events."""
        return _site_summary(self.truth).to_string(index=False)

    def to_frame(self) -> pd.DataFrame:
        """Per-site summary table."""
        return _site_summary(self.truth)


def _site_summary(truth: pd.DataFrame) -> pd.DataFrame:
    grouped = truth.groupby("site", sort=True)
    return pd.DataFrame(
        {
            "site": list(grouped.groups),
            "n": grouped.size().to_numpy(),
            "idh1_mutant": grouped["idh1_true"].mean().round(3).to_numpy(),
            "grade4": grouped["grade"].apply(lambda g: float((g == 4).mean())).round(3).to_numpy(),
            "mgmt_methylated": grouped["mgmt_true"].mean().round(3).to_numpy(),
            "os_events": grouped["os_event"].sum().to_numpy(),
            "median_age": grouped["age"].median().to_numpy(),
        }
    )


def simulate_tables(
    n: int = 240,
    *,
    n_sites: int = 3,
    seed: int = 0,
    site_effect: float = 1.0,
    model: GenerativeModel | None = None,
    survival_model: WeibullSurvivalModel | None = None,
    shortcut: Shortcut | None = None,
) -> SynthTables:
    """Draw the truth and clinical tables of a cohort without rendering images.

    Parameters
    ----------
    n : int
        Number of patients (>= n_sites).
    n_sites : int
        Number of sites (1..26), named ``siteA``, ``siteB``, ...
    seed : int
        Seed (>= 0); the tables equal those of :func:`generate_cohort` with the
        same arguments.
    site_effect : float
        Strength of acquisition differences (only the protocols depend on it).
    model : GenerativeModel, optional
        Label model (default :class:`GenerativeModel()`).
    survival_model : WeibullSurvivalModel, optional
        Survival model (default :class:`WeibullSurvivalModel()`).
    shortcut : Shortcut, optional
        A planted site shortcut (:mod:`neurofeat.synth.shortcut`; default none). The
        truth gains ``scanner``, ``p_scanner_b`` and ``shortcut_role``; nothing else
        changes.

    Returns
    -------
    SynthTables

    Examples
    --------
    >>> tables = simulate_tables(100, n_sites=2, seed=1)
    >>> tables.clinical.shape
    (100, 18)
    """
    n = _check_int("n", n, 1)
    n_sites = _check_int("n_sites", n_sites, 1, 26)
    seed = _check_int("seed", seed, 0)
    truth = simulate_labels(n, n_sites, np.random.default_rng([seed, _STREAM_LABELS]), model)
    survival = simulate_survival(truth, np.random.default_rng([seed, _STREAM_SURVIVAL]), survival_model)
    scanners = draw_scanners(truth, shortcut or Shortcut(), np.random.default_rng([seed, _STREAM_SCANNERS]))
    truth = pd.concat([truth, survival, scanners], axis=1)
    protocols = tuple(site_protocols(site_names(n_sites), site_effect, np.random.default_rng([seed, _STREAM_SITES])))
    clinical = truth.loc[:, list(CLINICAL_COLUMNS)].copy()
    clinical["grade"] = clinical["grade"].astype("Int64")
    clinical["os_event"] = clinical["os_event"].astype("boolean")
    return SynthTables(truth=truth, clinical=clinical.reset_index(drop=True), protocols=protocols, seed=seed)


@dataclass(frozen=True)
class RenderedPatient:
    """The images of one patient.

    Attributes
    ----------
    images : dict of str -> numpy.ndarray of int16, shape (size, size, size)
        ``t1``, ``t1ce``, ``t2``, ``flair`` after acquisition.
    segmentation : numpy.ndarray of uint8, shape (size, size, size)
        BraTS labels: 0 background, 1 necrosis, 2 oedema, 4 enhancing/solid tumour.
    latent : dict of str -> float
        Measured compartment volumes (``necrosis_ml``, ``enhancing_ml``, ``core_ml``,
        ``oedema_ml``: partial-volume sums on the grid), the physical tumour
        parameters and the anatomy warp.
    """

    images: dict[str, np.ndarray]
    segmentation: np.ndarray
    latent: dict[str, float]


def render_patient(
    row: pd.Series,
    protocol: SiteProtocol,
    *,
    size: int = 64,
    spacing: float = 2.0,
    rng: np.random.Generator,
) -> RenderedPatient:
    """Render the four contrasts of one truth row.

    Parameters
    ----------
    row : pandas.Series
        One row of :attr:`SynthTables.truth`.
    protocol : SiteProtocol
        Acquisition of the patient's site.
    size : int
        Voxels per axis.
    spacing : float
        Voxel size (mm).
    rng : numpy.random.Generator
        The patient's image stream.

    Returns
    -------
    RenderedPatient
    """
    template = load_mni152_tissues(float(spacing))
    coords = grid_coordinates_mm(size, spacing)
    spec = tumour_spec(row)
    r_outer = spec.outer_radius_mm
    warp = AnatomyWarp(
        rotation_deg=tuple(float(v) for v in rng.normal(0.0, 3.0, 3)),
        scale=tuple(float(v) for v in np.clip(rng.normal(1.0, 0.04, 3), 0.9, 1.1)),
        shift_mm=tuple(float(v) for v in rng.normal(0.0, 2.5, 3)),
        mass_centre_mm=spec.centre_mm,
        mass_strength=float(0.35 * r_outer / (r_outer + 15.0)),
        mass_radius_mm=float(1.2 * r_outer),
    )
    csf, gm, wm = warp_tissues(template, coords, warp)
    brain = np.clip(csf + gm + wm, 0.0, 1.0)
    compartments = tumour_compartments(spec, coords, wm, brain, spacing, rng)
    clean = compose_contrasts(csf, gm, wm, compartments, spec)
    mask = brain > 0.5
    images = acquire(clean, mask, protocol, seed=int(rng.integers(0, 2**31)))
    segmentation = (compartments.labels() * mask).astype(np.uint8)
    latent = compartments.volumes_ml(float(spacing) ** 3 / 1000.0)
    latent["core_ml"] = latent["necrosis_ml"] + latent["enhancing_ml"]
    latent.update(
        {
            "warp_rot_x_deg": warp.rotation_deg[0],
            "warp_rot_y_deg": warp.rotation_deg[1],
            "warp_rot_z_deg": warp.rotation_deg[2],
            "warp_scale_x": warp.scale[0],
            "warp_scale_y": warp.scale[1],
            "warp_scale_z": warp.scale[2],
            "warp_shift_x_mm": warp.shift_mm[0],
            "warp_shift_y_mm": warp.shift_mm[1],
            "warp_shift_z_mm": warp.shift_mm[2],
            "mass_strength": warp.mass_strength,
            "core_ml_target": spec.core_ml,
            "enhancement": spec.enhancement,
            "necrosis_fraction": spec.necrosis_fraction,
            "oedema_ratio": spec.oedema_ratio,
            "mismatch": spec.mismatch,
            "irregularity": spec.irregularity,
        }
    )
    return RenderedPatient(images=images, segmentation=segmentation, latent=latent)


def write_nifti_gz(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Write a NIfTI-1 ``.nii.gz`` reproducibly and atomically.

    The header comes from nibabel (``qform``/``sform`` = *affine*, code 1 scanner),
    the gzip stream has mtime 0 and no file name, so equal arrays give equal bytes.

    Parameters
    ----------
    path : pathlib.Path
        Destination (``.nii.gz``); written to a temporary name then renamed.
    array : numpy.ndarray, shape (nx, ny, nz)
        Voxel data (its dtype is kept).
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> world (mm, RAS+).
    """
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    payload = gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)
    _atomic_write(Path(path), payload)


def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(payload)
    os.replace(tmp, path)


def _format_value(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return repr(round(float(value), 4))
    return str(value)


def clinical_csv_text(clinical: pd.DataFrame) -> str:
    """clinical.csv as text: booleans ``true``/``false``, unknown empty, '\\n' lines.

    Parameters
    ----------
    clinical : pandas.DataFrame
        :attr:`SynthTables.clinical`.

    Returns
    -------
    str
    """
    return _csv_text(clinical)


def _csv_text(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    buffer.write(",".join(frame.columns) + "\n")
    columns = [frame[c].astype(object).tolist() for c in frame.columns]
    for values in zip(*columns):
        buffer.write(",".join(_format_value(v) for v in values) + "\n")
    return buffer.getvalue()


@dataclass(frozen=True)
class SynthCohort:
    """A synthetic cohort on disk.

    Attributes
    ----------
    root : pathlib.Path
        The output folder.
    manifest_path, clinical_path, truth_path : pathlib.Path
        ``manifest.csv``, ``clinical.csv``, ``truth.parquet``.
    manifest : pandas.DataFrame
        Manifest rows (paths relative to *root*).
    clinical : pandas.DataFrame
        Clinical table as written.
    truth : pandas.DataFrame
        Every latent variable.
    params : dict
        Arguments of the run (also in ``synth.json``).
    """

    root: Path
    manifest_path: Path
    clinical_path: Path
    truth_path: Path
    manifest: pd.DataFrame
    clinical: pd.DataFrame
    truth: pd.DataFrame
    params: dict = field(default_factory=dict)

    def image_path(self, patient_id: str, sequence: str) -> Path:
        """Absolute path of one image (``sequence`` in t1, t1ce, t2, flair, seg)."""
        return self.root / "images" / patient_id / f"{patient_id}_{sequence}.nii.gz"

    def summary(self) -> str:
        """Text summary: folder and one line per site."""
        return f"synthetic cohort at {self.root}\n" + _site_summary(self.truth).to_string(index=False)

    def to_frame(self) -> pd.DataFrame:
        """Per-site summary table."""
        return _site_summary(self.truth)


def generate_cohort(
    out_dir: str | os.PathLike,
    *,
    n: int = 240,
    n_sites: int = 3,
    seed: int = 0,
    size: int = 64,
    spacing: float = 2.0,
    site_effect: float = 1.0,
    model: GenerativeModel | None = None,
    survival_model: WeibullSurvivalModel | None = None,
    shortcut: Shortcut | None = None,
    write_segmentation: bool = True,
    overwrite: bool = False,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SynthCohort:
    """Generate and write a synthetic multi-site glioma cohort.

    Parameters
    ----------
    out_dir : path
        Output folder (created).
    n, n_sites, seed, site_effect, model, survival_model, shortcut
        As in :func:`simulate_tables`.
    size : int
        Voxels per axis of every image (16..256).
    spacing : float
        Voxel size in mm (0.5..8).
    write_segmentation : bool
        Also write ``<patient_id>_seg.nii.gz`` (BraTS labels).
    overwrite : bool
        Replace a cohort already in *out_dir*.
    n_jobs : int
        Worker processes rendering patients (0 = one per CPU, at most 4).  The
        bytes written do not depend on it.
    progress : callable, optional
        Called as ``progress(done, total)`` after each patient.

    Returns
    -------
    SynthCohort

    Raises
    ------
    FileExistsError
        If *out_dir* already holds a ``manifest.csv`` and ``overwrite`` is false.
    ValueError
        For a bad size, spacing, n, n_sites, seed or site_effect.

    Examples
    --------
    >>> cohort = generate_cohort("cohort", n=40, size=32, spacing=4.0)  # doctest: +SKIP
    >>> cohort.manifest.columns.tolist()  # doctest: +SKIP
    ['patient_id', 'site', 't1', 't1ce', 't2', 'flair']
    """
    size = _check_int("size", size, 16, 256)
    spacing = float(spacing)
    if not 0.5 <= spacing <= 8.0:
        raise ValueError(f"spacing is {spacing} mm; use a voxel size between 0.5 and 8 mm (default 2.0).")
    root = Path(out_dir)
    if (root / "manifest.csv").exists() and not overwrite:
        raise FileExistsError(
            f"{root} already holds a cohort (manifest.csv); pass overwrite=True (--overwrite) or choose another folder."
        )
    shortcut = shortcut or Shortcut()
    tables = simulate_tables(
        n, n_sites=n_sites, seed=seed, site_effect=site_effect, model=model, survival_model=survival_model,
        shortcut=shortcut,
    )
    images_dir = root / "images"
    if overwrite and (root / "synth.json").exists() and images_dir.exists():
        shutil.rmtree(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("manifest.csv", "clinical.csv", "truth.parquet"):
        if (root / stale).exists():
            (root / stale).unlink()

    protocols = {p.site: p for p in tables.protocols}
    truth = tables.truth
    jobs = [
        _PatientJob(
            index=i,
            row=row,
            protocol=scanner_protocol(protocols[row["site"]], row["scanner"], shortcut),
            size=size,
            spacing=spacing,
            seed=tables.seed,
            images_dir=images_dir,
            write_segmentation=write_segmentation,
        )
        for i, (_, row) in enumerate(truth.iterrows())
    ]
    results: list[tuple[dict, dict] | None] = [None] * len(jobs)
    n_jobs = _check_int("n_jobs", n_jobs, 0)
    n_workers = min(os.cpu_count() or 1, 4) if n_jobs == 0 else n_jobs
    n_workers = max(1, min(n_workers, len(jobs)))
    if n_workers == 1:
        for job in jobs:
            results[job.index] = _render_and_write(job)
            if progress is not None:
                progress(job.index + 1, len(jobs))
    else:
        template = load_mni152_tissues(spacing)  # built once here, handed to the workers
        with ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=_mp_context(),
            initializer=prime_template_cache,
            initargs=(template,),
        ) as pool:
            futures = {pool.submit(_render_and_write, job): job.index for job in jobs}
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(done, len(jobs))
    manifest_rows = [r[0] for r in results if r is not None]
    latent_rows = [r[1] for r in results if r is not None]

    latent = pd.DataFrame(latent_rows, index=truth.index)
    acquisition = protocols_frame(tables.protocols).add_prefix("acq_").rename(columns={"acq_site": "site"})
    truth = pd.concat([truth, latent], axis=1).merge(acquisition, on="site", how="left", validate="many_to_one")
    manifest = pd.DataFrame(manifest_rows, columns=list(MANIFEST_COLUMNS))
    params = {
        "n": int(n),
        "n_sites": int(n_sites),
        "seed": int(seed),
        "size": size,
        "spacing": spacing,
        "site_effect": float(site_effect),
        "write_segmentation": bool(write_segmentation),
        "shortcut": shortcut_card(truth, shortcut) if shortcut.enabled else None,
        "template": load_mni152_tissues(spacing).source,
        "neurofeat_version": _version(),
    }
    _write_truth(root / "truth.parquet", truth)
    _atomic_write(root / "sites.csv", _csv_text(protocols_frame(tables.protocols)).encode())
    _atomic_write(root / "oracle_traits.csv", _csv_text(truth[["patient_id", *TRAITS]]).encode())
    _atomic_write(root / "synth.json", (json.dumps(params, indent=2, sort_keys=True) + "\n").encode())
    _atomic_write(root / "clinical.csv", clinical_csv_text(tables.clinical).encode())
    _atomic_write(root / "manifest.csv", _csv_text(manifest).encode())  # last: marks a complete cohort
    return SynthCohort(
        root=root,
        manifest_path=root / "manifest.csv",
        clinical_path=root / "clinical.csv",
        truth_path=root / "truth.parquet",
        manifest=manifest,
        clinical=tables.clinical,
        truth=truth,
        params=params,
    )


@dataclass(frozen=True)
class _PatientJob:
    index: int
    row: pd.Series
    protocol: SiteProtocol
    size: int
    spacing: float
    seed: int
    images_dir: Path
    write_segmentation: bool


def _render_and_write(job: _PatientJob) -> tuple[dict, dict]:
    """Render one patient and write its files; returns (manifest record, latent)."""
    patient_id = str(job.row["patient_id"])
    rng = np.random.default_rng([job.seed, _STREAM_IMAGES, job.index])
    rendered = render_patient(job.row, job.protocol, size=job.size, spacing=job.spacing, rng=rng)
    affine = grid_affine(job.size, job.spacing)
    folder = job.images_dir / patient_id
    folder.mkdir(exist_ok=True)
    record = {"patient_id": patient_id, "site": str(job.row["site"])}
    for sequence in SEQUENCES:
        name = f"{patient_id}_{sequence}.nii.gz"
        write_nifti_gz(folder / name, rendered.images[sequence], affine)
        record[sequence] = f"images/{patient_id}/{name}"
    record["seg"] = ""
    if job.write_segmentation:
        write_nifti_gz(folder / f"{patient_id}_seg.nii.gz", rendered.segmentation, affine)
        record["seg"] = f"images/{patient_id}/{patient_id}_seg.nii.gz"
    return record, rendered.latent


def _mp_context():
    """'fork' while torch is not loaded here (cheap, shares the template); else 'spawn'."""
    import multiprocessing
    import sys

    if "torch" not in sys.modules and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _write_truth(path: Path, truth: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(truth, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    _atomic_write(path, sink.getvalue().to_pybytes())


def _version() -> str:
    from neurofeat import __version__

    return __version__
