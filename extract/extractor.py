"""Extraction: one embedding per patient per backbone (and perturbation) into the store.

The pipeline::

    store patients/scans ──► PatientDataset (workers: load, perturb, preprocess, cache)
        ──► batches ──► encoder (inference_mode; on GPU bf16 autocast + channels_last)
        ──► EmbeddingWriter.write_batch (pending Parquet parts of up to flush_rows rows)
        ──► commit (all parts of the backbone/perturbation become visible at once)

Batches are fixed consecutive chunks of the sorted patient list, whichever patients
are still to do, so on CPU a resumed or torchrun-sharded run gives bit-identical
embeddings to a clean run with the same ``batch_size``. Rows are staged in parts of up
to ``flush_rows`` rows (memory stays bounded; files stay large enough to read well).

Reliability: a patient whose scans cannot be read or preprocessed, or whose embedding
is not finite, is recorded in ``extract_failures`` with the reason while the others go
on. Parts are staged invisibly and committed once, so a run killed at any moment
(``kill -9``) leaves nothing visible, and a rerun resumes from the staged parts. A
lock in the store refuses a second concurrent extraction of the same backbone.

Scale-out: under ``torchrun --nproc-per-node N -m neurofeat extract ...`` each rank
takes every N-th batch of the patients still to do (no padding, so no duplicate
embeddings; a rank with nothing left to do only joins the commit), writes its own
parts, failures are gathered on rank 0, and rank 0 commits once after a barrier.

The encoder comes from :mod:`neurofeat.extract.backbone`, the forward pass from
:mod:`neurofeat.extract.embed`, the rank helpers from :mod:`neurofeat.extract.distributed`
and the dry run lives in :mod:`neurofeat.extract.dry_run`; this module holds the loop.

Example
-------
>>> from neurofeat.extract.backbone import resolve_extraction_backbone               # doctest: +SKIP
>>> backbone = resolve_extraction_backbone("dino_dro", models_dir="models")   # doctest: +SKIP
>>> result = extract_embeddings(Store.open("S"), backbone, batch_size=4)       # doctest: +SKIP
>>> print(result.summary())                                                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neurofeat.extract.backbone import ExtractionBackbone
from neurofeat.extract.dataset import (
    BatchedPatients,
    PatientDataset,
    fixed_chunks,
    load_patient_records,
    make_loader,
)
from neurofeat.extract.devices import default_workers, resolve_device
from neurofeat.extract.distributed import (
    barrier,
    broadcast_from_rank0,
    dist_env,
    gather_to_rank0,
    process_group,
)
from neurofeat.extract.embed import embed_with_fallback, prepare_encoder
from neurofeat.extract.perturb import Perturbation
from neurofeat.extract.preprocess import build_transforms
from neurofeat.progress import progress_bar

__all__ = [
    "PerturbationSummary",
    "ExtractResult",
    "extract_embeddings",
]


@dataclass(frozen=True)
class PerturbationSummary:
    """What one (backbone, perturbation) extraction did."""

    perturbation: str
    n_patients: int
    n_already_done: int
    n_written: int
    n_failed: int
    n_zero_filled: int
    n_cached: int
    seconds: float

    @property
    def patients_per_s(self) -> float:
        """Throughput over the patients processed in this run."""
        return (self.n_written + self.n_failed) / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class ExtractResult:
    """Outcome of :func:`extract_embeddings`.

    Attributes
    ----------
    backbone, checkpoint_sha256, preprocess_sha256, run_id : str
    device : str
    per_perturbation : tuple of PerturbationSummary
    failures : tuple of (perturbation, patient_id, reason)
    threads : int
        Intra-op CPU threads the encoder ran with (CPU embeddings depend on it).
    """

    backbone: str
    checkpoint_sha256: str
    preprocess_sha256: str
    run_id: str
    device: str
    per_perturbation: tuple[PerturbationSummary, ...]
    failures: tuple[tuple[str, str, str], ...] = ()
    threads: int = 1

    @property
    def n_failed(self) -> int:
        """Failed patients over all perturbations."""
        return sum(s.n_failed for s in self.per_perturbation)

    @property
    def n_written(self) -> int:
        """Rows written over all perturbations."""
        return sum(s.n_written for s in self.per_perturbation)

    def to_frame(self) -> Any:
        """One row per perturbation (pandas DataFrame)."""
        import pandas as pd

        rows = []
        for s in self.per_perturbation:
            rows.append({
                "backbone": self.backbone, "perturbation": s.perturbation, "n_patients": s.n_patients,
                "n_already_done": s.n_already_done, "n_written": s.n_written, "n_failed": s.n_failed,
                "n_zero_filled": s.n_zero_filled, "n_cached": s.n_cached, "seconds": round(s.seconds, 3),
                "patients_per_s": round(s.patients_per_s, 3) if s.seconds > 0 else None,
            })
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """Readable multi-line summary."""
        lines = [
            f"backbone {self.backbone} (checkpoint {self.checkpoint_sha256[:12]}, preprocessing "
            f"{self.preprocess_sha256[:12]}) on {self.device} ({self.threads} CPU thread(s)), run {self.run_id}"
        ]
        for s in self.per_perturbation:
            lines.append(
                f"  {s.perturbation}: {s.n_written} written, {s.n_already_done} already stored, "
                f"{s.n_failed} failed, {s.n_zero_filled} zero-filled of {s.n_patients} patients "
                f"in {s.seconds:.1f} s"
            )
        for pert, pid, reason in self.failures[:10]:
            lines.append(f"  FAILED {pid} [{pert}]: {reason}")
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more failures (see the extract_failures view)")
        return "\n".join(lines)


# ---------------------------------------------------------------- extraction
def extract_embeddings(
    store: Any,
    backbone: ExtractionBackbone,
    *,
    perturbations: Sequence[Perturbation] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    replace: bool = False,
    patient_ids: Iterable[str] | None = None,
    seed: int = 0,
    run_id: str | None = None,
    progress: bool = False,
    flush_rows: int = 512,
    flush_seconds: float = 60.0,
    threads: int | None = None,
) -> ExtractResult:
    """Extract one embedding per patient (per perturbation) of *backbone* into *store*.

    Parameters
    ----------
    store : neurofeat.store.Store
    backbone : ExtractionBackbone
        From :func:`neurofeat.extract.backbone.resolve_extraction_backbone`.
    perturbations : sequence of Perturbation, optional
        Default: only the unperturbed baseline (``"none"``).
    device : torch.device or str
        ``"cpu"``, ``"cuda"``, ``"auto"`` or a device.
    batch_size : int
        Volumes per forward pass.
    workers : int, optional
        DataLoader worker processes decoding and preprocessing; 0 = one background
        thread of this process. Default
        :func:`neurofeat.extract.devices.default_workers` (0 on CPU).
    cache_dir : path, optional
        On-disk cache of preprocessed volumes (shared across backbones that use the
        same preprocessing).
    replace : bool
        Allow a checkpoint different from the one stored under this backbone name (the
        commit swaps the whole backbone).
    patient_ids : iterable of str, optional
        Restrict to these patients (default: every registered patient).
    seed : int
        Seeds torch (inference is deterministic on CPU anyway); stored with the rows.
    run_id : str, optional
        Default: a new ``extract-<time>-<hex>`` id.
    progress : bool
        Show a rich progress bar (patients/s, ETA) on rank 0.
    flush_rows, flush_seconds : int, float
        Embeddings are staged in the store (one Parquet part, invisible until the
        commit) every *flush_rows* rows or *flush_seconds* seconds, whichever comes
        first, and at the end: parts stay large enough to read well, memory stays
        bounded (``flush_rows x dim`` floats), and a killed run loses at most that much
        work.
    threads : int, optional
        Intra-op threads of the encoder on CPU (``torch.set_num_threads``) for this call,
        restored afterwards; default: torch's setting (every core). Fewer threads leave
        cores to decoding, which the background loader then has to itself. CPU
        embeddings are reproducible for a given thread count: oneDNN may sum in
        another order with another count (measured: identical for resnet10/18, up to
        2e-5 apart for resnet50).

    Returns
    -------
    ExtractResult

    Raises
    ------
    neurofeat.store.StoreLockedError
        Another extraction of this backbone into this store is running.
    neurofeat.store.CheckpointMismatchError
        The backbone name holds another encoder (checkpoint, preprocessing or
        architecture) and *replace* is false.
    """
    perturbations = list(perturbations) if perturbations else [Perturbation()]
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    workers = default_workers(dev) if workers is None else int(workers)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    with process_group(dev):
        job = _start_job(store, backbone, dev, batch_size=batch_size, workers=workers, cache_dir=cache_dir,
                         replace=replace, patient_ids=patient_ids, seed=seed, run_id=run_id, progress=progress,
                         flush_rows=flush_rows, flush_seconds=flush_seconds)
        lock = _extract_lock(store, backbone.name)
        with _encoder_threads(threads) as used_threads, _locked_on_rank0(lock, job.rank):
            outcomes = [_extract_perturbation(job, pert) for pert in perturbations]
    return ExtractResult(
        backbone=backbone.name, checkpoint_sha256=backbone.checkpoint_sha256,
        preprocess_sha256=backbone.preprocess_sha256, run_id=job.run_id, device=str(dev),
        per_perturbation=tuple(summary for summary, _ in outcomes),
        failures=tuple(failure for _, failures in outcomes for failure in failures), threads=used_threads,
    )


# -------------------------------------------------------------------- set-up
@dataclass(frozen=True)
class _Job:
    """What every perturbation of one extraction shares."""

    store: Any
    backbone: ExtractionBackbone
    encoder: torch.nn.Module
    device: torch.device
    records: list[dict[str, Any]]
    run_id: str
    rank: int
    world: int
    batch_size: int
    workers: int
    cache_dir: str | os.PathLike[str] | None
    replace: bool
    seed: int
    progress: bool
    flush_rows: int
    flush_seconds: float


def _start_job(store: Any, backbone: ExtractionBackbone, device: torch.device, *, run_id: str | None,
               seed: int, patient_ids: Iterable[str] | None, **options: Any) -> _Job:
    """Seed, agree on the run id across ranks, move the encoder and read the patients."""
    from neurofeat.store import new_run_id

    rank, world = dist_env()
    torch.manual_seed(seed)
    run_id = broadcast_from_rank0(run_id or new_run_id("extract"))
    encoder = prepare_encoder(backbone.encoder, device)
    records = load_patient_records(store, backbone.preprocess.sequences, patient_ids)
    return _Job(store=store, backbone=backbone, encoder=encoder, device=device, records=records, run_id=run_id,
                rank=rank, world=world, seed=seed, **options)


@contextlib.contextmanager
def _encoder_threads(threads: int | None) -> Iterator[int]:
    """Run the body with *threads* intra-op CPU threads (None: unchanged); yields the count in use."""
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _extract_lock(store: Any, backbone: str) -> Any:
    from neurofeat.store import StoreLock

    return StoreLock(
        store.locks_dir / f"extract-{backbone}.lock",
        f"an extraction of backbone '{backbone}' into {store.root}",
    )


@contextlib.contextmanager
def _locked_on_rank0(lock: Any, rank: int) -> Iterator[None]:
    """Hold the store's extraction lock (taken by rank 0) for the body; every rank fails if it is taken."""
    from neurofeat.store import StoreLockedError

    try:
        locked_by_other = ""
        if rank == 0:
            try:
                lock.acquire()
            except StoreLockedError as exc:
                locked_by_other = str(exc)
        # every rank learns whether rank 0 got the lock (else the others would wait forever)
        locked_by_other = broadcast_from_rank0(locked_by_other)
        if locked_by_other:
            raise StoreLockedError(locked_by_other)
        yield
    finally:
        lock.release()


# ------------------------------------------------------------ one perturbation
@dataclass
class _Tally:
    """What this rank did for one perturbation."""

    n_written: int = 0
    n_cached: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    zero_filled: list[tuple[str, str]] = field(default_factory=list)


def _extract_perturbation(job: _Job, pert: Perturbation) -> tuple[PerturbationSummary, list[tuple[str, str, str]]]:
    """Extract one perturbation of every patient still to do, commit it; (summary, failures)."""
    from neurofeat.store import EmbeddingWriter

    t0 = time.perf_counter()
    backbone = job.backbone
    writer = EmbeddingWriter(
        job.store, backbone.name, checkpoint_sha256=backbone.checkpoint_sha256,
        preprocess_sha256=backbone.preprocess_sha256, perturbation=pert.label, run_id=job.run_id,
        replace=job.replace, seed=job.seed, rank=job.rank, world_size=job.world,
        architecture=backbone.architecture or None,
    )
    with writer:
        done = writer.done_ids()
        # every rank must shard the same work: agree on rank 0's view of what is done
        todo_ids = set(broadcast_from_rank0([r["patient_id"] for r in job.records if r["patient_id"] not in done]))
        barrier()
        loader = _loader(job, pert, todo_ids)
        tally = _embed_all(job, loader, todo_ids, _RowBuffer(writer, job.flush_rows, job.flush_seconds),
                           f"{backbone.name} [{pert.label}]", t0)
        n_written, n_failed, n_zero, n_cached, failures = _record_on_rank0(job, writer, tally)
        barrier()  # every rank's parts are on disk before the commit
        if job.world > 1 and job.rank == 0:
            writer.commit()
        barrier()
    summary = PerturbationSummary(
        perturbation=pert.label, n_patients=len(job.records), n_already_done=len(job.records) - len(todo_ids),
        n_written=n_written, n_failed=n_failed, n_zero_filled=n_zero, n_cached=n_cached,
        seconds=time.perf_counter() - t0,
    )
    return summary, [(pert.label, pid, reason) for pid, reason in failures]


def _loader(job: _Job, pert: Perturbation, todo_ids: set[str]) -> Any:
    """Batches of this rank: fixed consecutive chunks of the sorted patients, every world-th one still to do."""
    records = job.records
    pipeline = build_transforms(job.backbone.preprocess, perturbation=pert if pert.steps else None)
    dataset = PatientDataset(
        records, pipeline, cache_dir=job.cache_dir, preprocess_sha256=job.backbone.preprocess_sha256,
        perturbation=pert.label,
    )
    # Fixed batches over the full list: the same batch composition on resume and
    # under torchrun. Rank r takes every world-th batch still to do; a rank may get
    # none (a rerun with nothing left, or fewer batches left than ranks).
    chunks = [c for c in fixed_chunks(len(records), job.batch_size)
              if any(records[i]["patient_id"] in todo_ids for i in c)][job.rank::job.world]
    workers, background = job.workers, True
    if job.device.type == "cpu" and job.cache_dir is not None and _all_cached(dataset, [i for c in chunks for i in c]):
        # Nothing to decode: on CPU, workers or a loading thread would only compete
        # with the model for the same cores (measured: efficiency 0.77 with the
        # thread, 0.90 without); load in the loop itself.
        workers, background = 0, False
    return make_loader(BatchedPatients(dataset, chunks), workers=workers, pin_memory=job.device.type == "cuda",
                       background=background)


def _all_cached(dataset: PatientDataset, indices: Sequence[int]) -> bool:
    """True when every record at *indices* has its preprocessed volume in the cache,
    with the fingerprint that spares re-hashing its scans."""
    from neurofeat.extract.dataset import cache_key

    if dataset.cache is None:
        return False
    return all(
        dataset.cache.complete(cache_key(dataset.records[i], dataset.preprocess_sha256, dataset.perturbation))
        for i in indices
    )


def _embed_all(job: _Job, loader: Iterable[Any], todo_ids: set[str], buffer: _RowBuffer, label: str,
               t0: float) -> _Tally:
    """Embed every batch of *loader*, staging rows through *buffer*; progress on rank 0."""
    tally = _Tally()
    with progress_bar(job.progress and job.rank == 0, unit="patients", eta=True) as bar:
        task = bar.add_task(label, total=len(todo_ids), rate="-")
        n_seen = 0
        for batch in loader:
            _embed_batch_into(job, batch, todo_ids, buffer, tally)
            n_batch = sum(pid in todo_ids for pid in batch.patient_ids) + sum(
                pid in todo_ids for pid, _ in batch.failures)
            n_seen += n_batch
            elapsed = time.perf_counter() - t0
            bar.update(task, advance=n_batch, rate=f"{n_seen / elapsed:.2f}" if elapsed > 0 else "-")
    tally.n_written += buffer.flush()
    return tally


def _embed_batch_into(job: _Job, batch: Any, todo_ids: set[str], buffer: _RowBuffer, tally: _Tally) -> None:
    """One loaded batch: record its failures, embed the rest, stage the finite embeddings."""
    tally.failures.extend((pid, why) for pid, why in batch.failures if pid in todo_ids)
    if batch.images is None:
        return
    tally.n_cached += batch.n_cached
    emb, bad = embed_with_fallback(job.encoder, batch.images, job.device)
    bad_idx = {i for i, _ in bad}
    tally.failures.extend((batch.patient_ids[i], reason) for i, reason in bad if batch.patient_ids[i] in todo_ids)
    if emb is None:
        return
    finite = np.isfinite(emb).all(axis=1)
    ok = []
    for i, pid in enumerate(batch.patient_ids):
        if pid not in todo_ids or i in bad_idx:
            continue
        if not finite[i]:
            tally.failures.append((pid, "embedding has NaN/inf values (check the scans' intensities)"))
            continue
        ok.append(i)
    if ok:
        buffer.add([batch.patient_ids[i] for i in ok], emb[ok])
        tally.zero_filled.extend((batch.patient_ids[i], batch.zero_filled[i]) for i in ok if batch.zero_filled[i])
        tally.n_written += buffer.maybe_flush()


def _record_on_rank0(job: _Job, writer: Any, tally: _Tally) -> tuple[int, int, int, int, list[tuple[str, str]]]:
    """Gather every rank's tally on rank 0, which records failures and zero-filled patients.

    Returns (n_written, n_failed, n_zero_filled, n_cached, failures): totals on rank 0,
    this rank's own counts (and no failures) elsewhere.
    """
    failures = gather_to_rank0(tally.failures)
    flags = gather_to_rank0(tally.zero_filled)
    totals = gather_to_rank0([(tally.n_written, tally.n_cached)])
    if job.rank != 0:
        return tally.n_written, 0, 0, tally.n_cached, []
    for pid, reason in failures:
        writer.record_failure(pid, reason, stage="extract")
    for pid, seqs in flags:
        writer.record_failure(pid, f"sequence(s) {seqs} missing: zero-filled (the embedding is stored)",
                              stage="zero_filled")
    return sum(t[0] for t in totals), len(failures), len(flags), sum(t[1] for t in totals), failures


class _RowBuffer:
    """Collects embedding rows and stages them as one store part per flush."""

    def __init__(self, writer: Any, flush_rows: int, flush_seconds: float) -> None:
        if flush_rows < 1:
            raise ValueError(f"flush_rows must be >= 1, got {flush_rows}")
        self.writer = writer
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.ids: list[str] = []
        self.rows: list[np.ndarray] = []
        self.last = time.monotonic()

    def add(self, patient_ids: list[str], embeddings: np.ndarray) -> None:
        self.ids.extend(patient_ids)
        self.rows.append(np.asarray(embeddings, dtype=np.float32))

    def maybe_flush(self) -> int:
        if len(self.ids) >= self.flush_rows or time.monotonic() - self.last >= self.flush_seconds:
            return self.flush()
        return 0

    def flush(self) -> int:
        self.last = time.monotonic()
        if not self.ids:
            return 0
        ids, matrix = self.ids, np.concatenate(self.rows)
        self.ids, self.rows = [], []
        return self.writer.write_batch(ids, matrix)
