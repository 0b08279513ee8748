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

Example
-------
>>> backbone = resolve_extraction_backbone("dino_dro", models_dir="models")   # doctest: +SKIP
>>> result = extract_embeddings(Store.open("S"), backbone, batch_size=4)       # doctest: +SKIP
>>> print(result.summary())                                                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofeat.extract.dataset import (
    BatchedPatients,
    PatientDataset,
    fixed_chunks,
    load_patient_records,
    make_loader,
)
from neurofeat.extract.perturb import Perturbation
from neurofeat.extract.preprocess import PreprocessConfig, build_transforms, unwrap_transform_error

__all__ = [
    "ExtractionBackbone",
    "ExtractionError",
    "PerturbationSummary",
    "ExtractResult",
    "DryRunReport",
    "resolve_device",
    "default_workers",
    "resolve_extraction_backbone",
    "extract_embeddings",
    "dry_run",
    "embed_batch",
    "process_rank",
]


class ExtractionError(RuntimeError):
    """Extraction cannot start or finish (the message names what and the fix)."""


@dataclass(frozen=True)
class ExtractionBackbone:
    """An encoder ready to extract, with everything its rows must carry.

    Attributes
    ----------
    name : str
        Backbone name in the store (partition ``backbone=<name>``).
    encoder : torch.nn.Module
        Eval mode; ``(B, C, *input_size) -> (B, embedding_dim)``.
    checkpoint_sha256 : str
    preprocess : PreprocessConfig
    embedding_dim : int
    source : str
        ``"neurofeat"`` (a `neurofeat pretrain` checkpoint) or the adapter name.
    path : Path
    card : dict
    architecture : dict
        How the weights were built into a network (a neurofeat encoder config, or an
        adapter's inferred shape and options): stored with the rows, since the same
        checkpoint built another way is another encoder.
    """

    name: str
    encoder: torch.nn.Module
    checkpoint_sha256: str
    preprocess: PreprocessConfig
    embedding_dim: int
    source: str = "neurofeat"
    path: Path = Path(".")
    card: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocess_sha256(self) -> str:
        """Hash of :attr:`preprocess` (stored with every row)."""
        return self.preprocess.sha256()


# ------------------------------------------------------------------- devices
def default_workers(device: torch.device, cpu_count: int | None = None) -> int:
    """Loader worker processes when the user does not say: 0 on CPU, else one per spare core.

    On CPU the encoder already runs on every core: worker processes would take cores
    from it and add a shared-memory copy of every batch, so decoding runs in one
    background thread instead (measured on 2 cores: efficiency 0.49 with the thread,
    0.29 with 2 worker processes; ``benchmarks/bench_extract.py``). On a GPU the CPU
    only decodes, so every core but the one driving the GPU decodes (at most 8).
    """
    if device.type == "cpu":
        return 0
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cpu_count - 1))


def resolve_device(device: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; under torchrun ``cuda:<LOCAL_RANK>``.

    Raises
    ------
    ExtractionError
        ``cuda`` was asked for but no CUDA device is visible; or an unknown name.
    """
    name = (device or "auto").lower()
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise ExtractionError(f"--device must be auto, cpu or cuda, got {device!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ExtractionError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
    if name.startswith("cuda:"):
        return torch.device(name)
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local_rank % torch.cuda.device_count())


# ------------------------------------------------------------------ backbone
def _preprocess_from_card(card: Mapping[str, Any], config: Any, where: str) -> PreprocessConfig:
    stored = card.get("preprocessing")
    if isinstance(stored, Mapping) and stored:
        try:
            pre = PreprocessConfig.from_dict(stored)
        except (TypeError, ValueError) as exc:
            raise ExtractionError(f"{where}: the card's preprocessing cannot be read ({exc})") from None
        recorded = card.get("preprocess_sha256")
        if recorded and recorded != pre.sha256():
            raise ExtractionError(
                f"{where}: the card's preprocess_sha256 {str(recorded)[:12]}… does not match its preprocessing "
                f"settings ({pre.sha256()[:12]}…); the card was edited or written by another neurofeat version. "
                "Re-save the checkpoint with `neurofeat pretrain`."
            )
    else:
        pre = PreprocessConfig(spacing=tuple(config.spacing), input_size=int(config.input_size))
    if pre.in_channels != int(config.in_channels):
        raise ExtractionError(
            f"{where}: the encoder takes {config.in_channels} channel(s) but its preprocessing stacks "
            f"{pre.in_channels} sequence(s) {list(pre.sequences)}; the card is inconsistent"
        )
    if pre.input_size != (int(config.input_size),) * 3:
        raise ExtractionError(
            f"{where}: the encoder was trained at {config.input_size}^3 but its preprocessing outputs "
            f"{pre.input_size}; the card is inconsistent"
        )
    return pre


def resolve_extraction_backbone(
    name: str | None,
    *,
    models_dir: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    adapter: str | None = None,
    adapter_options: Mapping[str, Any] | None = None,
    preprocess: PreprocessConfig | None = None,
    device: torch.device | str = "cpu",
) -> ExtractionBackbone:
    """Load a backbone by name (``neurofeat pretrain`` output) or an external checkpoint.

    Parameters
    ----------
    name : str or None
        Backbone name: looked up in *models_dir* when *checkpoint* is None; otherwise
        the name to store the external checkpoint's rows under (default: the adapter).
    models_dir : path, optional
        Default ``$NEUROFEAT_MODELS`` or ``./models``.
    checkpoint, adapter : optional
        An external checkpoint file and its adapter
        (:data:`neurofeat.extract.adapters.ADAPTERS`).
    adapter_options : mapping, optional
        Options the adapter cannot read from the weights.
    preprocess : PreprocessConfig, optional
        For external checkpoints only (default: T1/T1ce/T2/FLAIR, 1 mm, 128^3).
    device : torch.device or str

    Raises
    ------
    ExtractionError
        Inconsistent arguments or card; wrapped checkpoint/adapter errors keep their
        messages.
    """
    if checkpoint is not None:
        from neurofeat.extract.adapters import load_adapter

        if not adapter:
            raise ExtractionError("--checkpoint needs --adapter (brainiac, medicalnet, monai-resnet or swinunetr)")
        pre = preprocess or PreprocessConfig()
        loaded = load_adapter(checkpoint, adapter, n_sequences=pre.in_channels, device=device, options=adapter_options)
        multiple = int(loaded.info.get("input_multiple", 1))
        if any(s % multiple for s in pre.input_size):
            raise ExtractionError(
                f"the {adapter} encoder needs input sides divisible by {multiple}; the preprocessing "
                f"outputs {pre.input_size}"
            )
        card = {"adapter": adapter, "checkpoint": str(checkpoint), "architecture": loaded.info,
                "preprocessing": pre.to_dict(), "preprocess_sha256": pre.sha256(),
                "checkpoint_sha256": loaded.sha256}
        return ExtractionBackbone(
            name=name or adapter, encoder=loaded.encoder, checkpoint_sha256=loaded.sha256, preprocess=pre,
            embedding_dim=loaded.embedding_dim, source=adapter, path=Path(checkpoint), card=card,
            architecture=dict(loaded.info),
        )
    if adapter:
        raise ExtractionError("--adapter needs --checkpoint PATH (the external weights file)")
    if preprocess is not None:
        raise ExtractionError("a neurofeat backbone's preprocessing comes from its card; it cannot be overridden")
    if not name:
        raise ExtractionError("give --backbone NAME (see `neurofeat backbones`) or --checkpoint PATH --adapter NAME")
    from neurofeat.extract.checkpoint import load_checkpoint, resolve_backbone
    from neurofeat.extract.encoders import embedding_dim

    path = resolve_backbone(name, models_dir)
    loaded = load_checkpoint(path, device=device)
    pre = _preprocess_from_card(loaded.card, loaded.config, str(path))
    return ExtractionBackbone(
        name=Path(name).name if Path(name).is_dir() else name, encoder=loaded.encoder,
        checkpoint_sha256=loaded.sha256, preprocess=pre, embedding_dim=embedding_dim(loaded.config),
        source="neurofeat", path=Path(path), card=dict(loaded.card), architecture=loaded.config.to_dict(),
    )


# ------------------------------------------------------------------- results
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


# -------------------------------------------------------------- distributed
def _dist_env() -> tuple[int, int]:
    """(rank, world_size): from an initialised process group, else torchrun's env."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    return _dist_env()[0]


def _init_distributed(device: torch.device) -> bool:
    """Start the process group under torchrun (if not yet); True when this call did."""
    rank, world = _dist_env()
    if world <= 1 or torch.distributed.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend)
    return True


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _gather_to_rank0(items: list[Any]) -> list[Any]:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return items
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    gathered: list[Any] = [None] * world if rank == 0 else None  # type: ignore[assignment]
    torch.distributed.gather_object(items, gathered, dst=0)
    return [x for part in gathered for x in part] if rank == 0 else []


def _broadcast_from_rank0(value: Any) -> Any:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


# ------------------------------------------------------------------ compute
def _prepare_encoder(encoder: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    encoder = encoder.eval().to(device)
    if device.type == "cuda":
        encoder = encoder.to(memory_format=torch.channels_last_3d)
    return encoder


def embed_batch(
    encoder: torch.nn.Module,
    images: torch.Tensor,
    device: torch.device,
    *,
    mixed_precision: bool | None = None,
    channels_last: bool | None = None,
) -> np.ndarray:
    """Embeddings of a batch ``(B, C, D, H, W)`` -> float32 ``(B, E)`` numpy array.

    Runs under ``torch.inference_mode``. ``mixed_precision`` (bf16 autocast) and
    ``channels_last`` (``channels_last_3d`` inputs; the encoder should be converted
    too, see :func:`extract_embeddings`) default to on for CUDA and off on CPU, where
    plain float32 keeps embeddings deterministic.
    """
    on_gpu = device.type == "cuda"
    mixed_precision = on_gpu if mixed_precision is None else mixed_precision
    channels_last = on_gpu if channels_last is None else channels_last
    with torch.inference_mode():
        x = images.to(device, non_blocking=on_gpu)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=mixed_precision):
            out = encoder(x)
        return out.float().cpu().numpy()


def _embed_with_fallback(
    encoder: torch.nn.Module, images: torch.Tensor, device: torch.device
) -> tuple[np.ndarray | None, list[tuple[int, str]]]:
    """Embed a batch; if the batch fails, embed patient by patient to isolate failures."""
    try:
        return embed_batch(encoder, images, device), []
    except (RuntimeError, ValueError) as exc:
        if images.shape[0] == 1:
            return None, [(0, f"{type(exc).__name__}: {exc}")]
        if device.type == "cuda":
            torch.cuda.empty_cache()
    rows: list[np.ndarray | None] = []
    failures: list[tuple[int, str]] = []
    for i in range(images.shape[0]):
        try:
            rows.append(embed_batch(encoder, images[i : i + 1], device)[0])
        except (RuntimeError, ValueError) as exc:
            rows.append(None)
            failures.append((i, f"{type(exc).__name__}: {exc}"))
    dim = next((r.shape[0] for r in rows if r is not None), 0)
    out = np.stack([r if r is not None else np.full(dim, np.nan, np.float32) for r in rows]) if dim else None
    return out, failures


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} patients/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


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


def _extract_lock(store: Any, backbone: str) -> Any:
    from neurofeat.store import StoreLock

    return StoreLock(
        store.locks_dir / f"extract-{backbone}.lock",
        f"an extraction of backbone '{backbone}' into {store.root}",
    )


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
        From :func:`resolve_extraction_backbone`.
    perturbations : sequence of Perturbation, optional
        Default: only the unperturbed baseline (``"none"``).
    device : torch.device or str
        ``"cpu"``, ``"cuda"``, ``"auto"`` or a device.
    batch_size : int
        Volumes per forward pass.
    workers : int, optional
        DataLoader worker processes decoding and preprocessing; 0 = one background
        thread of this process. Default :func:`default_workers` (0 on CPU).
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
    from neurofeat.extract.perturb import Perturbation as _Perturbation
    from neurofeat.store import EmbeddingWriter, new_run_id

    perturbations = list(perturbations) if perturbations else [_Perturbation()]
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    workers = default_workers(dev) if workers is None else int(workers)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    started_group = _init_distributed(dev)
    try:
        rank, world = _dist_env()
        torch.manual_seed(seed)
        run_id = _broadcast_from_rank0(run_id or new_run_id("extract"))
        encoder = _prepare_encoder(backbone.encoder, dev)
        pre = backbone.preprocess
        records = load_patient_records(store, pre.sequences, patient_ids)
        lock = _extract_lock(store, backbone.name)
    except BaseException:
        if started_group:
            torch.distributed.destroy_process_group()
        raise
    summaries: list[PerturbationSummary] = []
    all_failures: list[tuple[str, str, str]] = []
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    used_threads = torch.get_num_threads()
    try:
        locked_by_other = ""
        if rank == 0:
            from neurofeat.store import StoreLockedError

            try:
                lock.acquire()
            except StoreLockedError as exc:
                locked_by_other = str(exc)
        # every rank learns whether rank 0 got the lock (else the others would wait forever)
        locked_by_other = _broadcast_from_rank0(locked_by_other)
        if locked_by_other:
            from neurofeat.store import StoreLockedError

            raise StoreLockedError(locked_by_other)
        for pert in perturbations:
            t0 = time.perf_counter()
            writer = EmbeddingWriter(
                store, backbone.name, checkpoint_sha256=backbone.checkpoint_sha256,
                preprocess_sha256=backbone.preprocess_sha256, perturbation=pert.label, run_id=run_id,
                replace=replace, seed=seed, rank=rank, world_size=world, architecture=backbone.architecture or None,
            )
            with writer:
                done = writer.done_ids()
                # every rank must shard the same work: agree on rank 0's view of what is done
                todo_ids = set(_broadcast_from_rank0([r["patient_id"] for r in records if r["patient_id"] not in done]))
                _barrier()
                pipeline = build_transforms(pre, perturbation=pert if pert.steps else None)
                dataset = PatientDataset(
                    records, pipeline, cache_dir=cache_dir, preprocess_sha256=backbone.preprocess_sha256,
                    perturbation=pert.label,
                )
                # Fixed batches over the full list: the same batch composition on resume and
                # under torchrun. Rank r takes every world-th batch still to do; a rank may get
                # none (a rerun with nothing left, or fewer batches left than ranks).
                chunks = [c for c in fixed_chunks(len(records), batch_size)
                          if any(records[i]["patient_id"] in todo_ids for i in c)][rank::world]
                batched = BatchedPatients(dataset, chunks)
                loader_workers, background = workers, True
                if dev.type == "cpu" and cache_dir is not None and _all_cached(
                        dataset, [i for c in chunks for i in c]):
                    # Nothing to decode: on CPU, workers or a loading thread would only compete
                    # with the model for the same cores (measured: efficiency 0.77 with the
                    # thread, 0.90 without); load in the loop itself.
                    loader_workers, background = 0, False
                loader = make_loader(batched, workers=loader_workers, pin_memory=dev.type == "cuda",
                                     background=background)
                n_written = n_failed = n_zero = n_cached = 0
                local_failures: list[tuple[str, str]] = []
                local_flags: list[tuple[str, str]] = []
                buffer = _RowBuffer(writer, flush_rows, flush_seconds)
                with _progress(progress and rank == 0) as bar:
                    task = bar.add_task(f"{backbone.name} [{pert.label}]", total=len(todo_ids), rate="-")
                    n_seen = 0
                    for batch in loader:
                        local_failures.extend((pid, why) for pid, why in batch.failures if pid in todo_ids)
                        if batch.images is not None:
                            n_cached += batch.n_cached
                            emb, bad = _embed_with_fallback(encoder, batch.images, dev)
                            bad_idx = {i for i, _ in bad}
                            local_failures.extend(
                                (batch.patient_ids[i], reason) for i, reason in bad if batch.patient_ids[i] in todo_ids
                            )
                            if emb is not None:
                                finite = np.isfinite(emb).all(axis=1)
                                ok = []
                                for i, pid in enumerate(batch.patient_ids):
                                    if pid not in todo_ids or i in bad_idx:
                                        continue
                                    if not finite[i]:
                                        local_failures.append(
                                            (pid, "embedding has NaN/inf values (check the scans' intensities)"))
                                        continue
                                    ok.append(i)
                                if ok:
                                    buffer.add([batch.patient_ids[i] for i in ok], emb[ok])
                                    local_flags.extend((batch.patient_ids[i], batch.zero_filled[i])
                                                       for i in ok if batch.zero_filled[i])
                                    n_written += buffer.maybe_flush()
                        n_batch = sum(pid in todo_ids for pid in batch.patient_ids) + sum(
                            pid in todo_ids for pid, _ in batch.failures)
                        n_seen += n_batch
                        elapsed = time.perf_counter() - t0
                        bar.update(task, advance=n_batch, rate=f"{n_seen / elapsed:.2f}" if elapsed > 0 else "-")
                n_written += buffer.flush()
                failures = _gather_to_rank0(local_failures)
                flags = _gather_to_rank0(local_flags)
                totals = _gather_to_rank0([(n_written, n_cached)])
                if rank == 0:
                    for pid, reason in failures:
                        writer.record_failure(pid, reason, stage="extract")
                    for pid, seqs in flags:
                        writer.record_failure(pid, f"sequence(s) {seqs} missing: zero-filled (the embedding is stored)",
                                              stage="zero_filled")
                    n_failed, n_zero = len(failures), len(flags)
                    n_written = sum(t[0] for t in totals)
                    n_cached = sum(t[1] for t in totals)
                    all_failures.extend((pert.label, pid, reason) for pid, reason in failures)
                _barrier()  # every rank's parts are on disk before the commit
                if world > 1 and rank == 0:
                    writer.commit()
                _barrier()
            summaries.append(PerturbationSummary(
                perturbation=pert.label, n_patients=len(records), n_already_done=len(records) - len(todo_ids),
                n_written=n_written, n_failed=n_failed, n_zero_filled=n_zero, n_cached=n_cached,
                seconds=time.perf_counter() - t0,
            ))
    finally:
        torch.set_num_threads(previous_threads)
        lock.release()
        if started_group:
            torch.distributed.destroy_process_group()
    return ExtractResult(
        backbone=backbone.name, checkpoint_sha256=backbone.checkpoint_sha256,
        preprocess_sha256=backbone.preprocess_sha256, run_id=run_id, device=str(dev),
        per_perturbation=tuple(summaries), failures=tuple(all_failures), threads=used_threads,
    )


# ------------------------------------------------------------------- dry run
@dataclass(frozen=True)
class DryRunReport:
    """What :func:`extract_embeddings` would do, and the problems it would meet.

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
    import nibabel as nib
    from monai.data import correct_nifti_header_if_necessary

    from neurofeat.extract.volumes import (
        ScanGridError,
        ScanReadError,
        check_same_grid,
        parse_scan_sha256,
        spatial_shape,
        verify_scans,
    )

    pid = str(record.get("patient_id", "?"))
    registered = parse_scan_sha256(record.get("scan_sha256"))
    problems = []
    grids = []
    for seq in pre.sequences:
        path = record.get(seq)
        if not path:
            if pre.missing_sequence == "error":
                problems.append(f"sequence '{seq}' has no registered scan")
            continue
        if not os.path.exists(path):
            if pre.missing_sequence == "error":
                problems.append(f"sequence '{seq}': file {path} does not exist")
            continue
        try:
            if seq in registered:
                verify_scans([path], [registered[seq]], names=[seq], patient_id=pid)
            img = correct_nifti_header_if_necessary(nib.load(path))
            shape = spatial_shape(img.shape, path, pid, seq)
        except (ScanReadError, ScanGridError) as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - reported
            problems.append(f"sequence '{seq}': {path} is not a readable NIfTI ({exc})")
            continue
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        if any(z <= 0 or not np.isfinite(z) for z in zooms):
            problems.append(f"sequence '{seq}': {path} has invalid voxel spacing {zooms}")
        grids.append((seq, shape, np.asarray(img.affine, dtype=np.float64)))
    try:
        check_same_grid(grids, patient_id=pid)
    except ScanGridError as exc:
        problems.append(str(exc))
    return problems


def dry_run(
    store: Any,
    backbone: ExtractionBackbone,
    *,
    perturbations: Sequence[Perturbation] | None = None,
    replace: bool = False,
    patient_ids: Iterable[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> DryRunReport:
    """Check everything :func:`extract_embeddings` needs, without extracting.

    Checks: the checkpoint loaded (done by :func:`resolve_extraction_backbone`) and does
    not clash with the checkpoint stored under the backbone name; every scan exists, its
    bytes are those registered at ingest (sha256: a truncated, corrupted or replaced
    file is caught) and its NIfTI header reads as one 3-D volume with a valid spacing;
    each patient's sequences share a grid; the first readable patient preprocesses to the encoder's
    input shape and the encoder maps it to ``embedding_dim`` (and to the dimension
    already stored); free disk space covers the rows (and the cache).

    Returns
    -------
    DryRunReport
    """
    from neurofeat.extract.perturb import Perturbation as _Perturbation
    from neurofeat.store import backbone_provenance, identity_clash

    perturbations = list(perturbations) if perturbations else [_Perturbation()]
    pre = backbone.preprocess
    records = load_patient_records(store, pre.sequences, patient_ids)
    problems: list[tuple[str, str]] = []

    provenance = backbone_provenance(store, backbone.name)
    stored_dim = {p.get("dim") for p in provenance}
    clash = identity_clash(provenance, backbone.checkpoint_sha256, backbone.preprocess_sha256,
                           backbone.architecture or None, unknown_is_clash=replace)
    replacing = bool(clash)
    if replacing and not replace:
        problems.append(("", f"backbone '{backbone.name}' already holds another encoder ({clash}); "
                             "pass --replace to swap it, or use another --backbone name"))
    if stored_dim and not replacing and stored_dim != {backbone.embedding_dim}:
        problems.append(("", f"stored embeddings of '{backbone.name}' are {sorted(stored_dim)}-d, the encoder "
                             f"gives {backbone.embedding_dim}-d"))

    readable = []
    for record in records:
        found = _check_scans(record, pre)
        problems.extend((record["patient_id"], msg) for msg in found)
        if not found:
            readable.append(record)

    input_shape: tuple[int, ...] = (pre.in_channels, *pre.input_size)
    if readable:
        pipeline = build_transforms(pre)
        try:
            image = pipeline(dict(readable[0]))["image"]
            if tuple(image.shape) != input_shape:
                problems.append((readable[0]["patient_id"], f"preprocessing gives {tuple(image.shape)}, expected {input_shape}"))
            emb = embed_batch(backbone.encoder.eval(), image[None].float(), torch.device("cpu"))
            if emb.shape != (1, backbone.embedding_dim):
                problems.append(("", f"the encoder gives {emb.shape[1:]} embeddings, expected ({backbone.embedding_dim},)"))
            elif not np.isfinite(emb).all():
                problems.append((readable[0]["patient_id"], "the embedding has NaN/inf values"))
        except Exception as exc:  # noqa: BLE001 - reported
            exc = unwrap_transform_error(exc)
            problems.append((readable[0]["patient_id"], f"preprocessing/encoding failed: {type(exc).__name__}: {exc}"))

    todo: dict[str, int] = {}
    for pert in perturbations:
        part = store.partition_dir(backbone.name, pert.label)
        done: set[str] = set()
        files = sorted(part.glob("*.parquet")) if part.is_dir() and not replacing else []
        if files:
            import pyarrow.parquet as pq

            done.update(pq.read_table(files, columns=["patient_id"])["patient_id"].to_pylist())
        todo[pert.label] = sum(r["patient_id"] not in done for r in records)
    n_rows = sum(todo.values())
    bytes_needed = int(n_rows * (backbone.embedding_dim * 4 + 300) * 1.2)
    if cache_dir is not None:
        bytes_needed += int(len(records) * len(perturbations) * 4 * int(np.prod(input_shape)))
    usage = shutil.disk_usage(store.root)
    if cache_dir is not None:
        existing = Path(cache_dir).absolute()  # the cache is created by the run, not here
        while not existing.exists():
            existing = existing.parent
        usage = min(usage, shutil.disk_usage(existing), key=lambda u: u.free)
    if usage.free < bytes_needed:
        problems.append(("", f"only {usage.free / 1e6:.0f} MB free on the store/cache disk, ~{bytes_needed / 1e6:.0f} MB needed"))
    return DryRunReport(
        backbone=backbone.name, checkpoint_sha256=backbone.checkpoint_sha256,
        preprocess_sha256=backbone.preprocess_sha256, embedding_dim=backbone.embedding_dim,
        input_shape=input_shape, n_patients=len(records), todo=todo, problems=tuple(problems),
        bytes_needed=bytes_needed, bytes_free=int(usage.free),
    )
