"""`neurofeat extract --dry-run`: everything extraction needs, checked without extracting.

Checks, each reported as a problem rather than raised: the encoder does not clash
with the one stored under the backbone name; every scan exists, has the bytes
registered at ingest and a readable header-level grid (by extraction's own rules in
:mod:`neurofeat.extract.volumes`); the first readable patient preprocesses to the
encoder's input and embeds to ``embedding_dim``; the disk holds the rows (and cache).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofeat.extract.backbone import ExtractionBackbone
from neurofeat.extract.dataset import load_patient_records
from neurofeat.extract.embed import embed_batch
from neurofeat.extract.perturb import Perturbation
from neurofeat.extract.preprocess import (
    PreprocessConfig,
    build_transforms,
    unwrap_transform_error,
)

__all__ = ["DryRunReport", "dry_run", "radiomics_dry_run"]


@dataclass(frozen=True)
class DryRunReport:
    """What :func:`~neurofeat.extract.extractor.extract_embeddings` would do, and the problems it would meet.

    Attributes
    ----------
    backbone, checkpoint_sha256, preprocess_sha256 : str
    embedding_dim : int
    input_shape : tuple of int
        ``(C, D, H, W)`` of one preprocessed volume.
    n_patients : int
    todo : dict
        perturbation label -> number of patients still to extract.
    problems : tuple of (patient_id or "", problem)
        Unreadable / missing scans, grids that differ, a checkpoint clash, low disk.
    bytes_needed, bytes_free : int
    """

    backbone: str
    checkpoint_sha256: str
    preprocess_sha256: str
    embedding_dim: int
    input_shape: tuple[int, ...]
    n_patients: int
    todo: dict[str, int]
    problems: tuple[tuple[str, str], ...]
    bytes_needed: int
    bytes_free: int

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_frame(self) -> Any:
        """Problems as a DataFrame (patient_id, problem)."""
        import pandas as pd

        return pd.DataFrame(list(self.problems), columns=["patient_id", "problem"])

    def summary(self) -> str:
        """Readable multi-line summary."""
        lines = [
            f"backbone {self.backbone}: checkpoint {self.checkpoint_sha256[:12]} loads, "
            f"{self.embedding_dim}-d embeddings from inputs {self.input_shape}, preprocessing "
            f"{self.preprocess_sha256[:12]}",
            f"{self.n_patients} patients; would extract " + ", ".join(f"{n} [{p}]" for p, n in self.todo.items()),
            f"disk: ~{self.bytes_needed / 1e6:.1f} MB needed, {self.bytes_free / 1e9:.1f} GB free",
        ]
        lines += [f"PROBLEM {pid or '-'}: {msg}" for pid, msg in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"... and {len(self.problems) - 20} more problems")
        lines.append("OK: nothing was written" if self.ok else f"{len(self.problems)} problem(s); nothing was written")
        return "\n".join(lines)


def _check_scans(record: Mapping[str, Any], pre: PreprocessConfig) -> list[str]:
    """Checks of one patient's scans without decoding voxels: bytes as registered at
    ingest (sha256) and the header-level grid, by the same rules as extraction
    (:mod:`neurofeat.extract.volumes`)."""
    from neurofeat.extract.volumes import (
        ScanGridError,
        check_same_grid,
        parse_scan_sha256,
    )

    pid = str(record.get("patient_id", "?"))
    registered = parse_scan_sha256(record.get("scan_sha256"))
    problems: list[str] = []
    grids = []
    for seq in pre.sequences:
        path = record.get(seq)
        if not path or not os.path.exists(path):
            if pre.missing_sequence == "error":
                problems.append(f"sequence '{seq}': file {path} does not exist" if path
                                else f"sequence '{seq}' has no registered scan")
            continue
        grid, found = _check_scan(path, seq, pid, registered.get(seq))
        problems.extend(found)
        if grid is not None:
            grids.append(grid)
    try:
        check_same_grid(grids, patient_id=pid)
    except ScanGridError as exc:
        problems.append(str(exc))
    return problems


def _check_scan(
    path: str, seq: str, pid: str, sha256: str | None
) -> tuple[tuple[str, Any, np.ndarray] | None, list[str]]:
    """One existing scan: its bytes (when a hash was registered), header shape and spacing.

    Returns ((sequence, spatial shape, affine) or None when unreadable, problems).
    """
    import nibabel as nib
    from monai.data import correct_nifti_header_if_necessary

    from neurofeat.extract.volumes import (
        ScanGridError,
        ScanReadError,
        spatial_shape,
        verify_scans,
    )

    try:
        if sha256 is not None:
            verify_scans([path], [sha256], names=[seq], patient_id=pid)
        img = correct_nifti_header_if_necessary(nib.load(path))
        shape = spatial_shape(img.shape, path, pid, seq)
    except (ScanReadError, ScanGridError) as exc:
        return None, [str(exc)]
    except Exception as exc:  # noqa: BLE001 - reported
        return None, [f"sequence '{seq}': {path} is not a readable NIfTI ({exc})"]
    problems = []
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if any(z <= 0 or not np.isfinite(z) for z in zooms):
        problems.append(f"sequence '{seq}': {path} has invalid voxel spacing {zooms}")
    return (seq, shape, np.asarray(img.affine, dtype=np.float64)), problems


def dry_run(
    store: Any,
    backbone: ExtractionBackbone,
    *,
    perturbations: Sequence[Perturbation] | None = None,
    replace: bool = False,
    patient_ids: Iterable[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> DryRunReport:
    """Check everything :func:`~neurofeat.extract.extractor.extract_embeddings` needs, without extracting.

    Checks: the checkpoint loaded (done by
    :func:`~neurofeat.extract.backbone.resolve_extraction_backbone`) and does not clash
    with the checkpoint stored under the backbone name; every scan exists, its bytes are
    those registered at ingest (sha256: a truncated, corrupted or replaced file is
    caught) and its NIfTI header reads as one 3-D volume with a valid spacing; each
    patient's sequences share a grid; the first readable patient preprocesses to the
    encoder's input shape and the encoder maps it to ``embedding_dim`` (and to the
    dimension already stored); free disk space covers the rows (and the cache).

    Returns
    -------
    DryRunReport
    """
    perturbations = list(perturbations) if perturbations else [Perturbation()]
    pre = backbone.preprocess
    records = load_patient_records(store, pre.sequences, patient_ids)
    replacing, problems = _identity_problems(store, backbone, replace)
    readable = []
    for record in records:
        found = _check_scans(record, pre)
        problems.extend((record["patient_id"], msg) for msg in found)
        if not found:
            readable.append(record)
    input_shape: tuple[int, ...] = (pre.in_channels, *pre.input_size)
    if readable:
        problems.extend(_first_patient_problems(readable[0], backbone, input_shape))
    todo = {pert.label: _n_todo(store, backbone.name, pert.label, records, replacing) for pert in perturbations}
    bytes_needed = int(sum(todo.values()) * (backbone.embedding_dim * 4 + 300) * 1.2)
    if cache_dir is not None:
        bytes_needed += int(len(records) * len(perturbations) * 4 * int(np.prod(input_shape)))
    bytes_free = _free_bytes(store.root, cache_dir)
    if bytes_free < bytes_needed:
        problems.append(("", f"only {bytes_free / 1e6:.0f} MB free on the store/cache disk, "
                             f"~{bytes_needed / 1e6:.0f} MB needed"))
    return DryRunReport(
        backbone=backbone.name, checkpoint_sha256=backbone.checkpoint_sha256,
        preprocess_sha256=backbone.preprocess_sha256, embedding_dim=backbone.embedding_dim,
        input_shape=input_shape, n_patients=len(records), todo=todo, problems=tuple(problems),
        bytes_needed=bytes_needed, bytes_free=bytes_free,
    )


def _identity_problems(store: Any, backbone: ExtractionBackbone, replace: bool) -> tuple[bool, list[tuple[str, str]]]:
    """(whether the run would replace the stored backbone, problems with the stored identity)."""
    from neurofeat.store import backbone_provenance, identity_clash

    provenance = backbone_provenance(store, backbone.name)
    stored_dim = {p.get("dim") for p in provenance}
    clash = identity_clash(provenance, backbone.checkpoint_sha256, backbone.preprocess_sha256,
                           backbone.architecture or None, unknown_is_clash=replace)
    replacing = bool(clash)
    problems: list[tuple[str, str]] = []
    if replacing and not replace:
        problems.append(("", f"backbone '{backbone.name}' already holds another encoder ({clash}); "
                             "pass --replace to swap it, or use another --backbone name"))
    if stored_dim and not replacing and stored_dim != {backbone.embedding_dim}:
        problems.append(("", f"stored embeddings of '{backbone.name}' are {sorted(stored_dim)}-d, the encoder "
                             f"gives {backbone.embedding_dim}-d"))
    return replacing, problems


def _first_patient_problems(
    record: Mapping[str, Any], backbone: ExtractionBackbone, input_shape: tuple[int, ...]
) -> list[tuple[str, str]]:
    """Preprocess and embed one patient on CPU: shapes and finiteness."""
    pid = record["patient_id"]
    problems: list[tuple[str, str]] = []
    try:
        image = build_transforms(backbone.preprocess)(dict(record))["image"]
        if tuple(image.shape) != input_shape:
            problems.append((pid, f"preprocessing gives {tuple(image.shape)}, expected {input_shape}"))
        emb = embed_batch(backbone.encoder.eval(), image[None].float(), torch.device("cpu"))
        if emb.shape != (1, backbone.embedding_dim):
            problems.append(("", f"the encoder gives {emb.shape[1:]} embeddings, expected ({backbone.embedding_dim},)"))
        elif not np.isfinite(emb).all():
            problems.append((pid, "the embedding has NaN/inf values"))
    except Exception as exc:  # noqa: BLE001 - reported
        exc = unwrap_transform_error(exc)
        problems.append((pid, f"preprocessing/encoding failed: {type(exc).__name__}: {exc}"))
    return problems


def _n_todo(store: Any, backbone: str, perturbation: str, records: Sequence[Mapping[str, Any]],
            replacing: bool) -> int:
    """Patients of *records* not yet stored under (backbone, perturbation)."""
    part = store.partition_dir(backbone, perturbation)
    done: set[str] = set()
    files = sorted(part.glob("*.parquet")) if part.is_dir() and not replacing else []
    if files:
        import pyarrow.parquet as pq

        done.update(pq.read_table(files, columns=["patient_id"])["patient_id"].to_pylist())
    return sum(r["patient_id"] not in done for r in records)


def _free_bytes(store_root: Path, cache_dir: str | os.PathLike[str] | None) -> int:
    """Free bytes on the store's disk (and the cache's, whichever has less)."""
    usage = shutil.disk_usage(store_root)
    if cache_dir is not None:
        existing = Path(cache_dir).absolute()  # the cache is created by the run, not here
        while not existing.exists():
            existing = existing.parent
        usage = min(usage, shutil.disk_usage(existing), key=lambda u: u.free)
    return int(usage.free)


def radiomics_dry_run(store: Any, backbone: Any, *, replace: bool = False) -> DryRunReport:
    """Check everything a radiomics extraction needs, without computing features or writing.

    Checks: the parameters (already validated by
    :func:`~neurofeat.extract.radiomics.radiomics_backbone`) do not clash with those
    stored under the backbone name; every patient still to do has its sequences, files
    as registered at ingest, a segmentation on the images' grid (when registered) and a
    non-empty mask (:func:`~neurofeat.extract.radiomics.inspect_patient`).

    Parameters
    ----------
    store : neurofeat.store.Store
    backbone : neurofeat.extract.radiomics.RadiomicsBackbone
    replace : bool

    Returns
    -------
    DryRunReport
        ``input_shape`` is ``(number of sequences,)``.
    """
    from neurofeat.extract.radiomics import RadiomicsInputError, inspect_patient
    from neurofeat.extract.volumes import parse_scan_sha256

    records = load_patient_records(store, (*backbone.params.sequences, "seg"))
    replacing, problems = _identity_problems(store, backbone, replace)
    done = set() if replacing else set(_stored_ids(store.partition_dir(backbone.name, "none")))
    todo = 0
    for record in records:
        pid = record["patient_id"]
        if pid in done:
            continue
        todo += 1
        hashes = parse_scan_sha256(record.get("scan_sha256"))
        registered = {seq: (record[seq], hashes.get(seq, "")) for seq in (*backbone.params.sequences, "seg")
                      if record.get(seq)}
        try:
            inspect_patient(pid, registered, backbone.params)
        except RadiomicsInputError as exc:
            problems.append((pid, str(exc)))
    bytes_needed = int(todo * (backbone.embedding_dim * 4 + 300) * 1.2)
    bytes_free = _free_bytes(store.root, None)
    if bytes_free < bytes_needed:
        problems.append(("", f"only {bytes_free / 1e6:.0f} MB free on the store disk, ~{bytes_needed / 1e6:.0f} MB needed"))
    return DryRunReport(
        backbone=backbone.name, checkpoint_sha256=backbone.checkpoint_sha256,
        preprocess_sha256=backbone.preprocess_sha256, embedding_dim=backbone.embedding_dim,
        input_shape=(len(backbone.params.sequences),), n_patients=len(records), todo={"none": todo},
        problems=tuple(problems), bytes_needed=bytes_needed, bytes_free=bytes_free,
    )


def _stored_ids(partition: Path) -> list[str]:
    """Patient ids stored in a partition folder."""
    files = sorted(partition.glob("*.parquet")) if partition.is_dir() else []
    if not files:
        return []
    import pyarrow.parquet as pq

    return pq.read_table(files, columns=["patient_id"])["patient_id"].to_pylist()
