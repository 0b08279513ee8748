"""The ``extract`` run: a backbone (or an external checkpoint) -> embeddings in the store.

Resolves the encoder (:mod:`neurofeat.extract.backbone`), then either checks
everything without writing (:func:`extract_dry_run`, calling
:func:`neurofeat.extract.dry_run.dry_run`) or extracts
(:func:`extract_run`, calling :func:`neurofeat.extract.extractor.extract_embeddings`)
and logs the run's per-perturbation table (``run_extraction`` view). ``neurofeat
extract`` only parses, calls one of them and prints.

Example
-------
>>> source = BackboneSource("dino_dro", models_dir="models")          # doctest: +SKIP
>>> run = extract_run(Store.open("S"), source, perturb="gibbs:0.2")   # doctest: +SKIP
>>> print(run.result.summary())                                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
from neurofeat.store import (
    CheckpointMismatchError,
    RunInfo,
    Store,
    StoreLockedError,
    write_run,
)

__all__ = ["EXTRACT_ERRORS", "BackboneSource", "ExtractRun", "extract_dry_run", "extract_run"]

#: What an extraction raises for a user's mistake or a bad file (the CLI prints these
#: without a traceback; ValueError, e.g. a bad ``--device`` or ``--perturb``, as well).
EXTRACT_ERRORS: tuple[type[BaseException], ...] = (
    AdapterError, CheckpointError, BackboneNotFoundError, ExtractionError, CheckpointMismatchError,
    StoreLockedError, OSError,
)


@dataclass(frozen=True)
class BackboneSource:
    """Where the encoder comes from: a `neurofeat pretrain` backbone or an external checkpoint.

    Attributes
    ----------
    name : str or None
        Backbone name in *models_dir*, or (with *checkpoint*) the name to store under.
    models_dir : path, optional
    checkpoint, adapter : optional
        External weights file and its adapter.
    adapter_options : mapping
        Options the adapter cannot read from the weights.
    input_size, spacing : optional
        External checkpoints only (default 128 voxels, 1 mm).
    """

    name: str | None = None
    models_dir: str | os.PathLike[str] | None = None
    checkpoint: str | os.PathLike[str] | None = None
    adapter: str | None = None
    adapter_options: Mapping[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    spacing: float | None = None

    def resolve(self, device: Any = "cpu") -> ExtractionBackbone:
        """Load the encoder onto *device*.

        Raises
        ------
        ExtractionError
            *input_size*/*spacing* given for a neurofeat backbone (its card sets them),
            or inconsistent arguments (see
            :func:`~neurofeat.extract.backbone.resolve_extraction_backbone`).
        """
        if self.checkpoint is None and (self.input_size is not None or self.spacing is not None):
            raise ExtractionError("--input-size/--spacing only apply to --checkpoint; a neurofeat backbone's card "
                                  "sets them")
        preprocess = None
        if self.checkpoint is not None:
            preprocess = PreprocessConfig(input_size=self.input_size if self.input_size is not None else 128,
                                          spacing=self.spacing if self.spacing is not None else 1.0)
        return resolve_extraction_backbone(
            self.name, models_dir=self.models_dir, checkpoint=self.checkpoint, adapter=self.adapter,
            adapter_options=dict(self.adapter_options), preprocess=preprocess, device=device,
        )


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
                    replace: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> DryRunReport:
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

    Returns
    -------
    DryRunReport
    """
    perturbations = parse_perturbations(perturb)
    resolve_device(device)
    return dry_run(store, source.resolve("cpu"), perturbations=perturbations, replace=replace, cache_dir=cache_dir)


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
    dev = resolve_device(device)
    workers = default_workers(dev) if workers is None else workers
    backbone = source.resolve(dev)
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
