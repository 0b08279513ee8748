"""Patients of a store as a MONAI dataset: records, preprocessing, cache, loader.

One *record* per registered patient::

    {"patient_id": "P001", "site": "A", "t1": "/abs/t1.nii.gz", ..., "flair": "...",
     "scan_sha256": "t1=<sha>;t1ce=<sha>;..."}

(a sequence without a registered scan has ``None`` as its path). The dataset runs the
preprocessing chain of :mod:`neurofeat.extract.preprocess` in DataLoader workers; a
patient whose preprocessing fails becomes a failure item (patient id + reason) instead
of stopping the loader, so that extraction records it and goes on.

The optional on-disk cache holds preprocessed volumes keyed by the scans' sha256, the
preprocessing hash and the perturbation label: a second backbone with the same
preprocessing skips decoding and resampling. Entries are written atomically
(temporary file + ``os.replace``), so a killed run never leaves a truncated entry.

Example
-------
>>> records = load_patient_records(store, ("t1", "t1ce", "t2", "flair"))   # doctest: +SKIP
>>> dataset = PatientDataset(records, build_transforms(cfg), cache_dir="cache")  # doctest: +SKIP
>>> loader = make_loader(dataset, batch_size=4, workers=2)                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofeat.extract.preprocess import unwrap_transform_error
from neurofeat.extract.volumes import ScanReadError, parse_scan_sha256, verify_scans

__all__ = [
    "load_patient_records",
    "cache_key",
    "VolumeCache",
    "PatientDataset",
    "PatientBatch",
    "BatchedPatients",
    "fixed_chunks",
    "collate_patients",
    "BackgroundLoader",
    "make_loader",
]


def load_patient_records(
    store: Any,
    sequences: Sequence[str],
    patient_ids: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """One record per registered patient, sorted by patient id.

    Parameters
    ----------
    store : neurofeat.store.Store
    sequences : sequence of str
        Sequences to look up (the preprocessing's ``sequences``).
    patient_ids : iterable of str, optional
        Restrict to these patients (an unknown id is an error).

    Returns
    -------
    list of dict
        See the module docstring. Relative scan paths are resolved against the store
        root.

    Raises
    ------
    ValueError
        If a requested patient is not registered (names it), or the store holds no
        patients.
    """
    from neurofeat.store import read_table

    patients = read_table(store, "patients", ["patient_id", "site"]).to_pylist()
    scans = read_table(store, "scans", ["patient_id", "sequence", "path", "sha256"]).to_pylist()
    if not patients:
        raise ValueError(f"no patients are registered in {store.root}; run `neurofeat ingest` first")
    by_patient: dict[str, dict[str, tuple[str, str]]] = {}
    root = Path(store.root)
    for row in scans:
        path = Path(row["path"])
        if not path.is_absolute():
            path = root / path
        by_patient.setdefault(row["patient_id"], {})[str(row["sequence"]).lower()] = (str(path), row["sha256"])
    wanted = None if patient_ids is None else list(dict.fromkeys(str(p) for p in patient_ids))
    known = {p["patient_id"] for p in patients}
    if wanted is not None:
        unknown = [p for p in wanted if p not in known]
        if unknown:
            raise ValueError(
                f"patient(s) {unknown[:5]} are not registered in {store.root} ({len(unknown)} unknown); "
                "check the ids with `neurofeat sql \"SELECT patient_id FROM patients\"`"
            )
        keep = set(wanted)
        patients = [p for p in patients if p["patient_id"] in keep]
    records = []
    for patient in sorted(patients, key=lambda p: p["patient_id"]):
        scan = by_patient.get(patient["patient_id"], {})
        record: dict[str, Any] = {"patient_id": patient["patient_id"], "site": patient["site"]}
        for seq in sequences:
            record[seq] = scan[seq][0] if seq in scan else None
        record["scan_sha256"] = ";".join(f"{seq}={scan[seq][1] if seq in scan else ''}" for seq in sequences)
        records.append(record)
    return records


def cache_key(record: Mapping[str, Any], preprocess_sha256: str, perturbation: str = "none") -> str:
    """Cache key of a record's preprocessed volume (hex sha256).

    Built from the scans' sha256 (in sequence order), the preprocessing hash and the
    perturbation label, so any change of input bytes or settings misses the cache.
    """
    text = f"{preprocess_sha256}|{perturbation}|{record.get('scan_sha256', '')}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Files modified this recently get no stored fingerprint (see PatientDataset._trusted).
_RACY_NS = 3_000_000_000


class VolumeCache:
    """Preprocessed volumes on disk: ``<root>/<key[:2]>/<key>.npy`` (float32).

    Next to each volume, ``<key>.json`` holds the stat fingerprint (path, size,
    mtime) of the scan files it was computed from, after their sha256 matched the
    registered one: a later hit whose files still have that fingerprint needs no
    re-hash (git's index makes the same bet).

    Parameters
    ----------
    root : path
        Cache directory (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where the entry of *key* lives."""
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str, shape: Sequence[int] | None = None) -> np.ndarray | None:
        """The cached float32 array, or None if absent, unreadable (empty, truncated,
        not ``.npy``) or not of *shape*: the volume is then recomputed and rewritten."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if array.dtype != np.float32 or (shape is not None and array.shape != tuple(shape)):
            return None
        return array

    def complete(self, key: str) -> bool:
        """True when *key* has its volume and the fingerprint that spares re-hashing."""
        path = self.path(key)
        return path.exists() and path.with_suffix(".json").exists()

    def fingerprint(self, key: str) -> list | None:
        """The scan files' fingerprint stored with *key* (None if absent or unreadable)."""
        try:
            return json.loads(self.path(key).with_suffix(".json").read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, array: np.ndarray | None, fingerprint: list | None = None) -> None:
        """Store *array* (None: only the fingerprint) atomically: a reader sees the old
        state or the full entry. The fingerprint is written first, so a volume never
        sits next to the fingerprint of files it was not verified against."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fingerprint is not None:
            self._write(path.with_suffix(".json"), lambda h: h.write(json.dumps({"files": fingerprint}).encode()))
        elif array is not None:
            path.with_suffix(".json").unlink(missing_ok=True)  # describes an earlier verification
        if array is not None:
            self._write(path, lambda h: np.save(h, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False))

    @staticmethod
    def _write(path: Path, write: Callable[[Any], Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


class PatientDataset(torch.utils.data.Dataset):
    """Preprocessed encoder inputs of patient records (map-style, worker-safe).

    Parameters
    ----------
    records : sequence of dict
        From :func:`load_patient_records`.
    pipeline : callable
        ``record -> {"image": tensor (C, D, H, W), "zero_filled": str, ...}``
        (:func:`neurofeat.extract.preprocess.build_transforms`).
    cache_dir : path, optional
        Enables the on-disk cache of preprocessed volumes.
    preprocess_sha256 : str
        Part of the cache key (required with *cache_dir*).
    perturbation : str
        Part of the cache key.

    Notes
    -----
    ``__getitem__`` never raises for a bad patient: it returns an item with
    ``"image": None`` and ``"error"`` the reason.
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        pipeline: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        preprocess_sha256: str = "",
        perturbation: str = "none",
    ) -> None:
        if cache_dir is not None and not preprocess_sha256:
            raise ValueError("PatientDataset: a cache needs preprocess_sha256 (part of its key)")
        self.records = list(records)
        self.pipeline = pipeline
        self.cache = VolumeCache(cache_dir) if cache_dir is not None else None
        self.preprocess_sha256 = preprocess_sha256
        self.perturbation = perturbation

    def __len__(self) -> int:
        return len(self.records)

    @staticmethod
    def _scans(record: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        """``(sequence, path, registered sha256)`` of the record's registered scans."""
        registered = parse_scan_sha256(record.get("scan_sha256"))
        return [(name, os.fspath(record[name]), digest) for name, digest in registered.items() if record.get(name)]

    @staticmethod
    def _fingerprint(scans: Sequence[tuple[str, str, str]]) -> list | None:
        """``[[path, size, mtime_ns], ...]``, or None when a file is missing."""
        out = []
        for _, path, _ in scans:
            try:
                stat = os.stat(path)
            except OSError:
                return None
            out.append([path, stat.st_size, stat.st_mtime_ns])
        return out

    @staticmethod
    def _trusted(fingerprint: list | None) -> list | None:
        """*fingerprint*, unless a file was modified in the last seconds: a rewrite of the
        same size within the file system's timestamp resolution would keep its mtime,
        so such a fingerprint is not stored (the next hit hashes again, as git does)."""
        if fingerprint is None:
            return None
        recent = time.time_ns() - _RACY_NS
        return None if any(mtime >= recent for _, _, mtime in fingerprint) else fingerprint

    def _cached(self, record: Mapping[str, Any], key: str, pid: str) -> dict[str, Any] | None:
        """The item for a cache hit (None on a miss).

        A hit skips decoding, not the check that the scans are still the registered
        ones: files whose stat fingerprint changed since the volume was cached are
        hashed again, and a changed file is refused as decoding would refuse it.
        """
        assert self.cache is not None
        config = getattr(self.pipeline, "config", None)
        cached = self.cache.get(key, (config.in_channels, *config.input_size) if config is not None else None)
        if cached is None:
            return None
        scans = self._scans(record)
        now = self._fingerprint(scans)
        if now is None:
            return None  # a scan is gone: decoding decides (an error, or zero-fill if the card allows)
        if now != self.cache.fingerprint(key):
            try:
                verify_scans([p for _, p, _ in scans], [d for _, _, d in scans], names=[n for n, _, _ in scans],
                             patient_id=pid)
            except ScanReadError as exc:
                return {"patient_id": pid, "image": None, "zero_filled": "", "error": f"ScanReadError: {exc}",
                        "cached": False}
            if self._trusted(now) is not None:
                try:
                    self.cache.put(key, None, now)  # verified: the next hit needs no hash
                except OSError:
                    pass
        return {"patient_id": pid, "image": torch.from_numpy(cached), "zero_filled": "", "error": "", "cached": True}

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        pid = str(record["patient_id"])
        key = None
        if self.cache is not None:
            key = cache_key(record, self.preprocess_sha256, self.perturbation)
            hit = self._cached(record, key, pid)
            if hit is not None:
                return hit
            # taken before reading: a file changed while being read gets re-hashed next time
            before = self._trusted(self._fingerprint(self._scans(record)))
        try:
            out = self.pipeline(dict(record))
            image = torch.as_tensor(out["image"]).as_subclass(torch.Tensor).float().contiguous()
        except Exception as exc:  # noqa: BLE001 - recorded as this patient's failure
            exc = unwrap_transform_error(exc)
            reason = f"{type(exc).__name__}: {exc}"
            return {"patient_id": pid, "image": None, "zero_filled": "", "error": reason, "cached": False}
        zero_filled = str(out.get("zero_filled", ""))
        # Zero-filled volumes are not cached: their flag must be reported every time.
        if self.cache is not None and key is not None and not zero_filled:
            try:
                self.cache.put(key, image.numpy(), before)
            except OSError:
                pass  # a full or read-only cache never fails an extraction
        return {"patient_id": pid, "image": image, "zero_filled": zero_filled, "error": "", "cached": False}


@dataclass(frozen=True)
class PatientBatch:
    """A collated batch: the patients that preprocessed, and those that failed.

    Attributes
    ----------
    patient_ids : list of str
        Patients whose volumes are in ``images`` (same order).
    images : torch.Tensor or None
        ``(n, C, D, H, W)`` float32, or None when every patient of the batch failed.
    zero_filled : list of str
        Per patient of ``patient_ids``: comma-separated zero-filled sequences or "".
    failures : list of (patient_id, reason)
    n_cached : int
        How many volumes came from the cache.
    """

    patient_ids: list[str]
    images: torch.Tensor | None
    zero_filled: list[str]
    failures: list[tuple[str, str]]
    n_cached: int = 0

    def __len__(self) -> int:
        return len(self.patient_ids) + len(self.failures)

    def pin_memory(self) -> PatientBatch:
        """Support ``DataLoader(pin_memory=True)``."""
        if self.images is None:
            return self
        return PatientBatch(self.patient_ids, self.images.pin_memory(), self.zero_filled, self.failures, self.n_cached)


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``; inside a DataLoader worker, straight into shared memory.

    A worker's batch travels to the main process through shared memory; stacking into
    a shared buffer (as torch's default collate does) saves one copy of every volume.
    """
    if torch.utils.data.get_worker_info() is None:
        return torch.stack(images)
    first = images[0]
    numel = sum(image.numel() for image in images)
    storage = first._typed_storage()._new_shared(numel, device=first.device)
    out = first.new(storage).resize_(len(images), *first.shape)
    return torch.stack(images, out=out)


def collate_patients(items: Sequence[Mapping[str, Any]]) -> PatientBatch:
    """Stack the successful items of a batch; keep failures aside."""
    ok = [item for item in items if item["image"] is not None]
    failures = [(item["patient_id"], item["error"]) for item in items if item["image"] is None]
    images = _stack([item["image"] for item in ok]) if ok else None
    return PatientBatch(
        patient_ids=[item["patient_id"] for item in ok],
        images=images,
        zero_filled=[item["zero_filled"] for item in ok],
        failures=failures,
        n_cached=sum(bool(item.get("cached")) for item in ok),
    )


def fixed_chunks(n_records: int, batch_size: int) -> list[list[int]]:
    """Consecutive chunks ``[0..b-1], [b..2b-1], ...`` of the full, sorted record list.

    Batches are always these chunks, whichever patients are still to do and however
    many ranks share the work, so a patient's embedding is always computed in the same
    batch: on CPU, a resumed or sharded run gives bit-identical embeddings to a clean
    single-process run (batch composition changes the floating-point summation order).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [list(range(start, min(start + batch_size, n_records))) for start in range(0, n_records, batch_size)]


class BatchedPatients(torch.utils.data.Dataset):
    """Items are whole batches: item ``k`` preprocesses the records of ``chunks[k]``.

    Parameters
    ----------
    dataset : PatientDataset
        Over the full record list.
    chunks : list of list of int
        Record indices per batch (from :func:`fixed_chunks`, possibly filtered to the
        chunks that hold patients still to do).

    Notes
    -----
    Under torchrun each rank builds it over its own share of the chunks (every N-th),
    so ranks get whole batches and never a patient twice.
    """

    def __init__(self, dataset: PatientDataset, chunks: Sequence[Sequence[int]]) -> None:
        self.dataset = dataset
        self.chunks = [list(c) for c in chunks]

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> PatientBatch:
        return collate_patients([self.dataset[i] for i in self.chunks[index]])


def _identity(batch: Any) -> Any:
    return batch


def _worker_init(_: int) -> None:
    # One intra-op thread per worker: the workers run side by side with the model.
    torch.set_num_threads(1)


class BackgroundLoader:
    """Iterate an iterable's items prepared up to *depth* ahead in one background thread.

    Decoding and preprocessing (ISA-L inflate, numpy copies, torch ops) release the GIL,
    so one thread overlaps them with the model's forward pass without the worker
    processes' costs: no shared-memory copy of every batch, no process start. An
    exception raised while preparing an item is re-raised in the consumer at that
    item's place (MONAI's ``ThreadBuffer`` would end the iteration silently instead,
    losing the remaining patients), and leaving the loop early stops the thread.

    Parameters
    ----------
    source : iterable
        E.g. a ``DataLoader`` with ``num_workers=0``.
    depth : int
        Items prepared ahead (bounded memory).
    """

    _END = object()

    def __init__(self, source: Iterable[Any], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.source = source
        self.depth = depth

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        items: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def put(entry: tuple[Any, BaseException | None]) -> bool:
            while not stop.is_set():
                try:
                    items.put(entry, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for item in self.source:
                    if not put((item, None)):
                        return
                put((self._END, None))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                put((self._END, exc))

        thread = threading.Thread(target=produce, name="neurofeat-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item, error = items.get()
                if item is self._END:
                    if error is not None:
                        raise error
                    return
                yield item
        finally:
            stop.set()
            thread.join()


def make_loader(
    dataset: PatientDataset | BatchedPatients,
    *,
    batch_size: int | None = 4,
    workers: int = 2,
    sampler: Any = None,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
    background: bool = True,
) -> torch.utils.data.DataLoader | BackgroundLoader:
    """A loader over *dataset* yielding :class:`PatientBatch` in order.

    Parameters
    ----------
    dataset : PatientDataset or BatchedPatients
        With :class:`BatchedPatients` the batches are its chunks (*batch_size* is
        ignored).
    batch_size : int
    workers : int
        Worker processes that decode and preprocess while the model runs. With 0,
        batches are prepared in the main process by one background thread
        (:class:`BackgroundLoader`), which is faster when the model already keeps
        every core busy (CPU inference) or there are few cores.
    sampler : torch.utils.data.Sampler, optional
        E.g. ``monai.data.DistributedSampler(dataset, even_divisible=False,
        shuffle=False)`` under torchrun.
    pin_memory : bool
        Page-locked batches for fast host-to-GPU copies.
    prefetch_factor : int
        Batches each worker (or the background thread) prepares ahead (bounded memory).
    background : bool
        With ``workers=0``: prepare batches in a background thread (default) or in
        the loop itself (cheaper when there is almost nothing to prepare, e.g. every
        volume is in the cache, since the thread would compete with the model).
    """
    batched = isinstance(dataset, BatchedPatients)
    if not batched and (batch_size is None or batch_size < 1):
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(prefetch_factor=prefetch_factor, worker_init_fn=_worker_init, persistent_workers=False)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None if batched else batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=_identity if batched else collate_patients,
        pin_memory=pin_memory,
        drop_last=False,
        **kwargs,
    )
    return loader if workers > 0 or not background else BackgroundLoader(loader, depth=prefetch_factor)
