"""The ``extract`` run: a backbone (or an external checkpoint) -> embeddings in the store.

Resolves the encoder (:mod:`neurofeat.extract.backbone`), then either checks
everything without writing (:func:`extract_dry_run`, calling
:func:`neurofeat.extract.dry_run.dry_run`) or extracts
(:func:`extract_run`, calling :func:`neurofeat.extract.extractor.extract_embeddings`)
and logs the run's per-perturbation table (``run_extraction`` view). ``neurofeat
extract`` only parses, calls one of them and prints.

Two reference backbones need no checkpoint (``BackboneSource.kind``):

- ``random``: a randomly initialised encoder of a stated architecture and seed
  (:func:`neurofeat.extract.backbone.random_backbone`), extracted like any encoder;
- ``radiomics``: IBSI radiomic features (:mod:`neurofeat.extract.radiomics`) computed in
  the tumour segmentation when one is registered, else in the brain mask, stored as the
  backbone's embedding (same layout and provenance columns), with a per-patient
  ``radiomics`` run table (``run_radiomics`` view) saying which region was used.

Example
-------
>>> source = BackboneSource("dino_dro", models_dir="models")          # doctest: +SKIP
>>> run = extract_run(Store.open("S"), source, perturb="gibbs:0.2")   # doctest: +SKIP
>>> print(run.result.summary())                                       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from neurofeat.extract.adapters import AdapterError
from neurofeat.extract.backbone import (
    ExtractionBackbone,
    ExtractionError,
    resolve_extraction_backbone,
)
from neurofeat.extract.checkpoint import BackboneNotFoundError, CheckpointError
from neurofeat.extract.devices import default_workers, resolve_device
from neurofeat.extract.distributed import process_rank
from neurofeat.extract.dry_run import DryRunReport, dry_run
from neurofeat.extract.extractor import ExtractResult, extract_embeddings
from neurofeat.extract.perturb import parse_perturbations
from neurofeat.extract.preprocess import PreprocessConfig
from neurofeat.extract.radiomics import RadiomicsError
from neurofeat.store import (
    CheckpointMismatchError,
    RunInfo,
    Store,
    StoreError,
    StoreLockedError,
    write_run,
)

__all__ = ["EXTRACT_ERRORS", "REFERENCE_BACKBONES", "BackboneSource", "ExtractRun", "extract_dry_run",
           "extract_run"]

#: Backbone names that need no checkpoint: a random-init encoder and radiomic features.
REFERENCE_BACKBONES: tuple[str, ...] = ("random", "radiomics")

#: What an extraction raises for a user's mistake or a bad file (the CLI prints these
#: without a traceback; ValueError, e.g. a bad ``--device`` or ``--perturb``, as well).
EXTRACT_ERRORS: tuple[type[BaseException], ...] = (
    AdapterError, CheckpointError, BackboneNotFoundError, ExtractionError, CheckpointMismatchError,
    StoreLockedError, RadiomicsError, OSError,
)


@dataclass(frozen=True)
class BackboneSource:
    """Where the encoder comes from: a `neurofeat pretrain` backbone, an external
    checkpoint, or a reference backbone (``random``, ``radiomics``).

    Attributes
    ----------
    name : str or None
        Backbone name in *models_dir*, or (with *checkpoint*) the name to store under,
        or ``random`` / ``radiomics``.
    models_dir : path, optional
    checkpoint, adapter : optional
        External weights file and its adapter.
    adapter_options : mapping
        Options the adapter cannot read from the weights.
    input_size, spacing : optional
        External checkpoints and ``random`` (default 128 voxels, 1 mm).
    arch, widen_factor : optional
        ``random`` only (default resnet50, 1.0).
    radiomics_params : path, optional
        ``radiomics`` only (default ``neurofeat/data/radiomics.yaml``).
    store_as : str, optional
        Store the rows under this backbone name instead of *name* (e.g. ``random-s1``
        for a second seed; one name holds one encoder).
    """

    name: str | None = None
    models_dir: str | os.PathLike[str] | None = None
    checkpoint: str | os.PathLike[str] | None = None
    adapter: str | None = None
    adapter_options: Mapping[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    spacing: float | None = None
    arch: str | None = None
    widen_factor: float | None = None
    radiomics_params: str | os.PathLike[str] | None = None
    store_as: str | None = None

    @property
    def kind(self) -> str:
        """``'random'``, ``'radiomics'``, ``'checkpoint'`` (external) or ``'pretrained'``."""
        if self.checkpoint is None and self.name in REFERENCE_BACKBONES:
            return str(self.name)
        return "checkpoint" if self.checkpoint is not None else "pretrained"

    def _check_options(self) -> None:
        kind = self.kind
        if self.checkpoint is not None and self.name in REFERENCE_BACKBONES and not self.store_as:
            raise ExtractionError(f"'{self.name}' is a reference backbone (no checkpoint): drop --checkpoint, or "
                                  "store the external checkpoint under another --backbone name")
        if kind != "random" and (self.arch is not None or self.widen_factor is not None):
            raise ExtractionError("--arch/--widen-factor only apply to --backbone random (a checkpoint's card or "
                                  "adapter sets the architecture)")
        if kind != "radiomics" and self.radiomics_params is not None:
            raise ExtractionError("--radiomics-params only applies to --backbone radiomics")
        if kind == "radiomics" and (self.input_size is not None or self.spacing is not None):
            raise ExtractionError("--input-size/--spacing do not apply to --backbone radiomics: features are computed "
                                  "on the scans' own grid (set resampledPixelSpacing in --radiomics-params to resample)")
        if kind == "pretrained" and (self.input_size is not None or self.spacing is not None):
            raise ExtractionError("--input-size/--spacing only apply to --checkpoint and --backbone random; a "
                                  "neurofeat backbone's card sets them")

    @property
    def store_name(self) -> str | None:
        """The backbone name the rows are stored under."""
        return self.store_as or self.name

    def resolve(self, device: Any = "cpu", *, seed: int = 0) -> ExtractionBackbone:
        """Load (or, for ``random``, build under *seed*) the encoder onto *device*.

        Raises
        ------
        ExtractionError
            Options that do not apply to this kind of backbone, or inconsistent
            arguments (see :func:`~neurofeat.extract.backbone.resolve_extraction_backbone`).
        """
        self._check_options()
        if self.kind == "radiomics":
            raise ExtractionError("the radiomics backbone has no encoder; use radiomics_source()")
        preprocess = None
        if self.checkpoint is not None or self.kind == "random":
            preprocess = PreprocessConfig(input_size=self.input_size if self.input_size is not None else 128,
                                          spacing=self.spacing if self.spacing is not None else 1.0)
        if self.kind == "random":
            from neurofeat.extract.backbone import random_backbone

            return random_backbone(self.store_name or "random", arch=self.arch or "resnet50",
                                   widen_factor=self.widen_factor if self.widen_factor is not None else 1.0,
                                   preprocess=preprocess, seed=seed, device=device)
        backbone = resolve_extraction_backbone(
            self.name, models_dir=self.models_dir, checkpoint=self.checkpoint, adapter=self.adapter,
            adapter_options=dict(self.adapter_options), preprocess=preprocess, device=device,
        )
        if self.store_as:
            backbone = dataclasses.replace(backbone, name=self.store_as)
        return backbone

    def radiomics_source(self) -> Any:
        """The :class:`~neurofeat.extract.radiomics.RadiomicsBackbone` of ``--backbone radiomics``."""
        from neurofeat.extract.radiomics import radiomics_backbone

        self._check_options()
        return radiomics_backbone(self.store_name or "radiomics", self.radiomics_params)


@dataclass(frozen=True, eq=False)
class ExtractRun:
    """A finished extraction (on rank 0).

    Attributes
    ----------
    result : ExtractResult
        What the extraction did, per perturbation, with its failures.
    tables : dict name -> DataFrame
        The run log's tables (``extraction``: one row per perturbation).
    params : dict
        Provenance of the run, as stored in ``run.json``.
    info : RunInfo or None
        Where the run log was written; None when it could not be (see *log_error*:
        the embeddings are committed all the same).
    log_error : str or None
    """

    result: ExtractResult
    tables: dict[str, pd.DataFrame]
    params: dict[str, Any]
    info: RunInfo | None
    log_error: str | None = None


def extract_dry_run(store: Store, source: BackboneSource, *, perturb: str | None = None, device: str = "auto",
                    replace: bool = False, cache_dir: str | os.PathLike[str] | None = None,
                    seed: int = 0) -> DryRunReport:
    """Check the encoder, scans, shapes and disk space for an extraction; write nothing.

    Parameters
    ----------
    store : Store
    source : BackboneSource
    perturb : str, optional
        Perturbations as ``neurofeat extract --perturb`` takes them.
    device : str
        Only checked (as the extraction would); the dry run embeds one patient on CPU.
    replace, cache_dir : as for :func:`extract_run`.
    seed : int
        ``--backbone random``: the initialisation to check against what is stored.

    Returns
    -------
    DryRunReport
    """
    perturbations = parse_perturbations(perturb)
    resolve_device(device)
    if source.kind == "radiomics":
        from neurofeat.extract.dry_run import radiomics_dry_run

        _no_perturbation(perturbations)
        return radiomics_dry_run(store, source.radiomics_source(), replace=replace)
    return dry_run(store, source.resolve("cpu", seed=seed), perturbations=perturbations, replace=replace,
                   cache_dir=cache_dir)


def extract_run(store: Store, source: BackboneSource, *, perturb: str | None = None, device: str = "auto",
                batch_size: int = 4, workers: int | None = None, threads: int | None = None,
                cache_dir: str | os.PathLike[str] | None = None, seed: int = 0, replace: bool = False,
                progress: bool = False) -> ExtractRun | None:
    """Extract one embedding per patient (and perturbation) into *store* and log the run.

    Parameters
    ----------
    store : Store
    source : BackboneSource
    perturb : str, optional
        e.g. ``"gibbs:0.2,bias:0.3"`` (:func:`neurofeat.extract.perturb.parse_perturbations`).
    device, batch_size, workers, threads, cache_dir, seed, replace, progress
        As for :func:`neurofeat.extract.extractor.extract_embeddings` (*workers*
        default :func:`neurofeat.extract.devices.default_workers`).

    Returns
    -------
    ExtractRun or None
        None on torchrun ranks other than 0.

    Raises
    ------
    One of :data:`EXTRACT_ERRORS`, or ValueError for a bad option.
    """
    perturbations = parse_perturbations(perturb)
    if source.kind == "radiomics":
        _no_perturbation(perturbations)
        return _radiomics_run(store, source.radiomics_source(), seed=seed, replace=replace, progress=progress,
                              workers=workers or 0)
    dev = resolve_device(device)
    workers = default_workers(dev) if workers is None else workers
    backbone = source.resolve(dev, seed=seed)
    result = extract_embeddings(store, backbone, perturbations=perturbations, device=dev, batch_size=batch_size,
                                workers=workers, cache_dir=cache_dir, replace=replace, seed=seed,
                                progress=progress, threads=threads)
    if process_rank() != 0:
        return None
    tables = {"extraction": result.to_frame()}
    params = {"backbone": result.backbone, "checkpoint_sha256": result.checkpoint_sha256,
              "preprocess_sha256": result.preprocess_sha256, "preprocessing": backbone.preprocess.to_dict(),
              "source": backbone.source, "device": result.device, "batch_size": batch_size, "workers": workers,
              "threads": result.threads, "seed": seed, "perturbations": [p.label for p in perturbations],
              "embedding_run_id": result.run_id}
    try:
        info = write_run(store, "extract", tables, params=params)
    except Exception as exc:  # noqa: BLE001 - the embeddings are committed; the log is secondary
        return ExtractRun(result=result, tables=tables, params=params, info=None, log_error=str(exc))
    return ExtractRun(result=result, tables=tables, params=params, info=info)


# ------------------------------------------------------------------ radiomics backbone
def _no_perturbation(perturbations: Sequence[Any]) -> None:
    if any(p.steps for p in perturbations):
        raise ExtractionError("--perturb does not apply to --backbone radiomics (perturbations act on an encoder's "
                              "preprocessed input); extract radiomics without it")


def _scan_records(store: Store) -> list[tuple[str, str, dict[str, tuple[str, str]]]]:
    """``(patient_id, site, {sequence: (absolute path, registered sha256)})`` of every patient, sorted."""
    from pathlib import Path

    from neurofeat.store import read_table

    patients = read_table(store, "patients", ["patient_id", "site"]).to_pylist()
    if not patients:
        raise ExtractionError(f"no patients are registered in {store.root}; run `neurofeat ingest` first")
    scans: dict[str, dict[str, tuple[str, str]]] = {}
    for row in read_table(store, "scans", ["patient_id", "sequence", "path", "sha256"]).to_pylist():
        path = Path(row["path"])
        path = path if path.is_absolute() else Path(store.root) / path
        scans.setdefault(row["patient_id"], {})[str(row["sequence"]).lower()] = (str(path), row["sha256"])
    return sorted((p["patient_id"], p["site"], scans.get(p["patient_id"], {})) for p in patients)


def _inspect_all(todo: Sequence[tuple[str, str, dict[str, Any]]], backbone: Any, progress: bool) -> dict[str, Any]:
    """Every patient's region, checked before anything is computed; raises naming every bad patient."""
    from neurofeat.extract.radiomics import RadiomicsCohortError, RadiomicsInputError, inspect_patient
    from neurofeat.progress import progress_bar

    regions: dict[str, Any] = {}
    problems: list[RadiomicsInputError] = []
    with progress_bar(progress, transient=True) as bar:
        task = bar.add_task(f"{backbone.name}: checking masks", total=len(todo))
        for pid, _, scans in todo:
            try:
                regions[pid] = inspect_patient(pid, scans, backbone.params)
            except RadiomicsInputError as exc:
                problems.append(exc)
            bar.update(task, advance=1)
    if problems:
        raise RadiomicsCohortError(problems)
    return regions


def _features_of(job: tuple[str, dict[str, Any], Any]) -> tuple[str, Any, str | None]:
    """One patient's vector (worker-safe): ``(patient_id, vector or None, failure reason or None)``."""
    from neurofeat.extract.radiomics import RadiomicsInputError, patient_features

    pid, scans, backbone = job
    try:
        vector, _ = patient_features(pid, scans, backbone.params, backbone.feature_names)
    except RadiomicsInputError as exc:
        return pid, None, str(exc)
    return pid, vector, None


def _compute_all(todo: Sequence[tuple[str, str, dict[str, Any]]], backbone: Any, workers: int,
                 progress: bool) -> Any:
    """Yield ``(patient_id, vector or None, reason)`` in patient order, on *workers* processes (0/1: here)."""
    from neurofeat.progress import progress_bar

    jobs = [(pid, scans, backbone) for pid, _, scans in todo]
    t0 = time.perf_counter()
    with progress_bar(progress, unit="patients", eta=True) as bar:
        task = bar.add_task(f"{backbone.name} [radiomics]", total=len(jobs), rate="-")
        if workers > 1 and len(jobs) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                outcomes = pool.map(_features_of, jobs, chunksize=1)
                for n, outcome in enumerate(outcomes, 1):
                    bar.update(task, advance=1, rate=f"{n / (time.perf_counter() - t0):.2f}")
                    yield outcome
        else:
            for n, job in enumerate(jobs, 1):
                outcome = _features_of(job)
                bar.update(task, advance=1, rate=f"{n / (time.perf_counter() - t0):.2f}")
                yield outcome


def _radiomics_run(store: Store, backbone: Any, *, seed: int, replace: bool, progress: bool,
                   workers: int, flush_rows: int = 256) -> ExtractRun:
    """Radiomic features of every patient still to do -> the store, as the backbone's embeddings.

    Every patient's region is checked first (segmentation on the images' grid, mask not
    empty, files as registered); any problem raises before anything is staged, so the
    store is unchanged. Features are then computed patient by patient (on *workers*
    processes) and staged every *flush_rows* rows: a killed run resumes. A patient the
    library cannot describe (e.g. a region too small for texture) is recorded in
    ``extract_failures`` and the others are stored, as for an encoder.
    """
    import numpy as np
    import pandas as pd

    from neurofeat.extract.extractor import ExtractResult, PerturbationSummary
    from neurofeat.runs.tables import shape
    from neurofeat.store import EmbeddingWriter, new_run_id

    t0 = time.perf_counter()
    records = _scan_records(store)
    run_id = new_run_id("extract")
    writer = EmbeddingWriter(store, backbone.name, checkpoint_sha256=backbone.checkpoint_sha256,
                             preprocess_sha256=backbone.preprocess_sha256, perturbation="none", run_id=run_id,
                             replace=replace, seed=seed, architecture=backbone.architecture)
    failures: list[tuple[str, str, str]] = []
    written: list[str] = []
    with writer:
        done = writer.done_ids()
        todo = [r for r in records if r[0] not in done]
        regions = _inspect_all(todo, backbone, progress)
        ids: list[str] = []
        rows: list[Any] = []
        for pid, vector, reason in _compute_all(todo, backbone, workers, progress):
            if vector is None:
                failures.append(("none", pid, str(reason)))
                writer.record_failure(pid, str(reason), stage="extract")
                continue
            ids.append(pid)
            rows.append(vector)
            if len(ids) >= flush_rows:
                writer.write_batch(ids, np.stack(rows))
                written += ids
                ids, rows = [], []
        if ids:
            writer.write_batch(ids, np.stack(rows))
            written += ids
    seconds = time.perf_counter() - t0
    summary = PerturbationSummary(
        perturbation="none", n_patients=len(records), n_already_done=len(records) - len(todo),
        n_written=len(written), n_failed=len(failures), n_zero_filled=0, n_cached=0, seconds=seconds)
    result = ExtractResult(backbone=backbone.name, checkpoint_sha256=backbone.checkpoint_sha256,
                           preprocess_sha256=backbone.preprocess_sha256, run_id=run_id, device="cpu",
                           per_perturbation=(summary,), failures=tuple(failures), threads=1)
    site_of = {pid: site for pid, site, _ in records}
    region_rows = pd.DataFrame(
        [{"patient_id": pid, "site": site_of[pid], "mask": regions[pid].mask, "mask_file": regions[pid].mask_file,
          "mask_voxels": regions[pid].mask_voxels, "mask_ml": regions[pid].mask_ml,
          "n_features": backbone.embedding_dim} for pid in written],
        columns=["patient_id", "site", "mask", "mask_file", "mask_voxels", "mask_ml", "n_features"])
    tables = {"extraction": result.to_frame(),
              "radiomics": shape(region_rows, "extract", "radiomics", backbone=backbone.name, seed=seed,
                                 checkpoint_sha256=backbone.checkpoint_sha256,
                                 preprocess_sha256=backbone.preprocess_sha256)}
    params = {"backbone": backbone.name, "checkpoint_sha256": backbone.checkpoint_sha256,
              "preprocess_sha256": backbone.preprocess_sha256, "source": backbone.source,
              "radiomics": {"params_file": backbone.params.source,
                            "params_file_sha256": backbone.params.file_sha256,
                            "params": backbone.params.to_dict(), "sequences": list(backbone.params.sequences),
                            "mask_rule": backbone.architecture["mask_rule"],
                            "library": backbone.architecture["library"],
                            "library_version": backbone.architecture["library_version"],
                            "n_features": backbone.embedding_dim, "feature_names": list(backbone.feature_names),
                            "n_tumour": int((region_rows["mask"] == "tumour").sum()),
                            "n_brain": int((region_rows["mask"] == "brain").sum())},
              "device": "cpu", "workers": workers, "seed": seed, "perturbations": ["none"],
              "embedding_run_id": run_id}
    try:
        info = write_run(store, "extract", tables, params=params)
    except (StoreError, OSError, ValueError) as exc:  # the embeddings are committed; the log is secondary
        return ExtractRun(result=result, tables=tables, params=params, info=None, log_error=str(exc))
    return ExtractRun(result=result, tables=tables, params=params, info=info)
