"""Preprocessing of one patient's four MRI sequences into an encoder input.

The pipeline is a MONAI dictionary-transform chain, fully described by a frozen
:class:`PreprocessConfig` whose :meth:`~PreprocessConfig.sha256` is stored with every
embedding row (``preprocess_sha256``) and in every checkpoint card, so that pretraining
and extraction provably see the same inputs.

Steps (in order)::

    CheckSequencesd     every sequence listed and its file present (else error / zero-fill)
    LoadSequencesd      nibabel read (one-shot gzip inflate), all sequences on one grid
                        (shape + affine), stacked as "image" (C, X, Y, Z) float32 in
                        config order, zero-filled channels left at 0 (volumes.py)
    [perturbation]      optional intensity perturbation on raw intensities (perturb.py)
    Orientationd        reorient to ``orientation`` (default RAS)
    Spacingd            resample to ``spacing`` mm (bilinear)
    CropForegroundBoxd  crop to the bounding box of voxels > ``foreground_threshold`` in
                        any channel, plus ``crop_margin`` voxels
    FitToSized / ResizeWithPadOrCropd / Resized
                        bring the crop to ``input_size`` (see ``size_mode``)
    NormalizeNonzerod   z-score per channel over that channel's non-zero (brain) voxels;
                        background stays 0

``LoadSequencesd``, ``CropForegroundBoxd`` and ``NormalizeNonzerod`` compute exactly
what MONAI's ``LoadImaged`` + ``EnsureChannelFirstd`` + ``ConcatItemsd``,
``CropForegroundd`` and ``NormalizeIntensityd(nonzero=True, channel_wise=True)`` compute
(``tests/extract/test_preprocess_equivalence.py`` checks the whole chain against those
stock transforms bit for bit); they exist because decoding, the bounding box and the
masked z-score were most of a cold extraction's CPU time (2.5-3x less with them).

The result of the chain for one record ``{"patient_id": ..., "t1": path, ...}`` is the
same dict with ``"image"`` a float32 tensor of shape ``(C, *input_size)`` and
``"zero_filled"`` a comma-separated string of zero-filled sequences (``""`` if none).

Example
-------
>>> cfg = PreprocessConfig(input_size=32, spacing=(2.0, 2.0, 2.0))
>>> pipeline = build_transforms(cfg)
>>> out = pipeline({"patient_id": "P1", "t1": "t1.nii.gz", "t1ce": "t1ce.nii.gz",
...                 "t2": "t2.nii.gz", "flair": "flair.nii.gz"})   # doctest: +SKIP
>>> out["image"].shape                                              # doctest: +SKIP
torch.Size([4, 32, 32, 32])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurofeat.extract.volumes import ScanGridError, ScanReadError, parse_scan_sha256, read_stacked

__all__ = [
    "PREPROCESS_VERSION",
    "SEQUENCES",
    "PreprocessConfig",
    "MissingSequenceError",
    "ScanGridError",
    "ScanReadError",
    "preprocess_hash",
    "build_transforms",
    "preprocess_record",
    "CheckSequencesd",
    "LoadSequencesd",
    "CropForegroundBoxd",
    "NormalizeNonzerod",
    "FitToSized",
    "PreprocessPipeline",
    "unwrap_transform_error",
]

#: Bumped whenever the implementation of the chain changes what it outputs for a given
#: configuration; it is part of the hashed configuration.
PREPROCESS_VERSION = 1

#: The canonical sequence order (channel order of the encoders).
SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

_SIZE_MODES = ("fit", "pad_crop", "resize")
_MISSING_POLICIES = ("error", "zero")
_INTERPOLATIONS = ("bilinear", "nearest")


def _triple(value: Any, name: str, kind: type) -> tuple:
    """Coerce a scalar or a length-3 sequence to a 3-tuple of *kind*."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        values = (value, value, value)
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(f"PreprocessConfig.{name} must be a number or 3 numbers, got {value!r}") from None
    if len(values) != 3:
        raise ValueError(f"PreprocessConfig.{name} must have 3 values (x, y, z), got {value!r}")
    out = tuple(kind(v) for v in values)
    if any(v <= 0 for v in out):
        raise ValueError(f"PreprocessConfig.{name} must be positive, got {value!r}")
    return out


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that determines the encoder input of a patient.

    Parameters
    ----------
    sequences : tuple of str
        Sequence names, in channel order. Each must be a key of the patient record
        (the columns of the store's ``scans`` view, pivoted). Default T1, T1ce, T2, FLAIR.
    spacing : 3 floats
        Target voxel spacing in mm after resampling (the encoder's spacing).
    input_size : int or 3 ints
        Spatial size ``(D, H, W)`` of the encoder input.
    orientation : str
        Target axis codes (nibabel convention, ``"RAS"``: first axis increases to the
        Right, second to Anterior, third to Superior).
    crop_margin : int
        Voxels kept around the brain's bounding box when cropping.
    foreground_threshold : float
        A voxel belongs to the brain when its raw intensity is above this value in any
        channel (images are expected skull-stripped with a zero background).
    size_mode : {"fit", "pad_crop", "resize"}
        How the brain crop becomes ``input_size``: ``"fit"`` keeps the spacing when the
        crop fits and otherwise shrinks it (same factor on every axis, area
        interpolation) until it does, then zero-pads centrally; ``"pad_crop"`` keeps the
        spacing and centre-pads/centre-crops; ``"resize"`` stretches each axis
        (trilinear) to the target, like BrainIAC's resizing.
    interpolation : {"bilinear", "nearest"}
        Interpolation of the spacing resampling.
    missing_sequence : {"error", "zero"}
        A missing sequence is an error for that patient, or (when the backbone's card
        allows it) a zero-filled channel flagged in ``"zero_filled"``.
    version : int
        Implementation version of the chain (:data:`PREPROCESS_VERSION`).

    Raises
    ------
    ValueError
        If a field has an invalid value (the message names the field and the choices).
    """

    sequences: tuple[str, ...] = SEQUENCES
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    input_size: tuple[int, int, int] = (128, 128, 128)
    orientation: str = "RAS"
    crop_margin: int = 0
    foreground_threshold: float = 0.0
    size_mode: str = "fit"
    interpolation: str = "bilinear"
    missing_sequence: str = "error"
    version: int = field(default=PREPROCESS_VERSION)

    def __post_init__(self) -> None:
        seqs = (self.sequences,) if isinstance(self.sequences, str) else tuple(self.sequences)
        seqs = tuple(str(s).strip().lower() for s in seqs)
        if not seqs or any(not s for s in seqs) or len(set(seqs)) != len(seqs):
            raise ValueError(
                f"PreprocessConfig.sequences must be distinct non-empty names, got {self.sequences!r}"
            )
        object.__setattr__(self, "sequences", seqs)
        object.__setattr__(self, "spacing", _triple(self.spacing, "spacing", float))
        object.__setattr__(self, "input_size", _triple(self.input_size, "input_size", int))
        orient = str(self.orientation).upper()
        axes = {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}
        if len(orient) != 3 or any(c not in axes for c in orient) or {axes[c] for c in orient} != {0, 1, 2}:
            raise ValueError(
                f"PreprocessConfig.orientation must be 3 axis codes such as 'RAS' or 'LPS', got {self.orientation!r}"
            )
        object.__setattr__(self, "orientation", orient)
        if int(self.crop_margin) < 0:
            raise ValueError(f"PreprocessConfig.crop_margin must be >= 0, got {self.crop_margin!r}")
        object.__setattr__(self, "crop_margin", int(self.crop_margin))
        object.__setattr__(self, "foreground_threshold", float(self.foreground_threshold))
        for name, choices in (
            ("size_mode", _SIZE_MODES),
            ("interpolation", _INTERPOLATIONS),
            ("missing_sequence", _MISSING_POLICIES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"PreprocessConfig.{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}"
                )
        object.__setattr__(self, "version", int(self.version))

    # ------------------------------------------------------------------ identity
    @property
    def in_channels(self) -> int:
        """Number of input channels (one per sequence)."""
        return len(self.sequences)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); inverse of :meth:`from_dict`."""
        return {
            f.name: list(getattr(self, f.name)) if isinstance(getattr(self, f.name), tuple) else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        """Build a config from :meth:`to_dict` output (e.g. a checkpoint card).

        Raises
        ------
        ValueError
            If *data* has keys that are not fields (names them).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown preprocessing setting(s) {unknown}; known: {sorted(names)}. "
                "Was the card written by a newer neurofeat?"
            )
        return cls(**dict(data))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the text that is hashed."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        """Stable hex sha256 of the canonical JSON; the ``preprocess_sha256`` of rows."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def replace(self, **changes: Any) -> PreprocessConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def preprocess_hash(config: PreprocessConfig) -> str:
    """The ``preprocess_sha256`` of *config* (same as ``config.sha256()``)."""
    return config.sha256()


# ---------------------------------------------------------------------- errors
class MissingSequenceError(ValueError):
    """A patient lacks a sequence the preprocessing needs.

    Attributes
    ----------
    patient_id, sequence, path : str
        Who, which sequence and the offending path ('' when the sequence is not listed).
    """

    def __init__(self, patient_id: str, sequence: str, path: str = "", detail: str = "") -> None:
        self.patient_id = str(patient_id)
        self.sequence = str(sequence)
        self.path = str(path)
        where = f"file {path} does not exist" if path else "no scan is registered"
        msg = (
            f"patient {patient_id}: sequence '{sequence}' is missing ({detail or where}); "
            "register the scan with `neurofeat ingest`, or use a backbone whose card allows "
            "zero-filled sequences (missing_sequence='zero')"
        )
        super().__init__(msg)


# ------------------------------------------------------------------ transforms
def _patient(data: Mapping[str, Any]) -> str:
    return str(data.get("patient_id", "<unknown patient>"))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


class CheckSequencesd:
    """Check that every sequence is listed and its file exists.

    With ``policy="zero"`` a missing sequence's name is recorded in
    ``data["zero_filled"]``; :class:`LoadSequencesd` leaves its channel at zero, on the
    grid of the sequences that are present.

    Parameters
    ----------
    sequences : sequence of str
        Keys of the record holding file paths.
    policy : {"error", "zero"}
        What a missing sequence does.

    Raises
    ------
    MissingSequenceError
        Naming the patient and sequence, when ``policy="error"`` or every sequence is
        missing.
    """

    def __init__(self, sequences: Sequence[str], policy: str = "error") -> None:
        self.sequences = tuple(sequences)
        self.policy = policy

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(data)
        missing: list[str] = []
        for seq in self.sequences:
            value = out.get(seq)
            if _is_missing(value):
                if self.policy == "error":
                    raise MissingSequenceError(_patient(out), seq)
                missing.append(seq)
            elif not os.path.exists(os.fspath(value)):
                if self.policy == "error":
                    raise MissingSequenceError(_patient(out), seq, os.fspath(value))
                missing.append(seq)
        present = [s for s in self.sequences if s not in missing]
        if not present:
            raise MissingSequenceError(
                _patient(out), ",".join(self.sequences), detail="no sequence of this patient exists"
            )
        out["zero_filled"] = ",".join(missing)
        return out


class LoadSequencesd:
    """Read the sequences' NIfTI files into one channel-stacked ``MetaTensor``.

    The values equal MONAI's ``LoadImaged(reader="NibabelReader", dtype=float32,
    squeeze_non_spatial_dims=True)`` + ``EnsureChannelFirstd`` + ``ConcatItemsd`` (see
    :func:`neurofeat.extract.volumes.read_stacked` for why it is not those three).

    Parameters
    ----------
    sequences : sequence of str
        Keys of the record holding file paths, in channel order.
    name : str
        Key of the stacked output; the sequence keys are removed.
    atol : float
        Absolute tolerance on affine entries (mm) between sequences.

    Notes
    -----
    When the record carries ``scan_sha256`` (records from the store do), each file's
    bytes are checked against the sha256 registered at ingest.

    Raises
    ------
    ScanReadError
        A file cannot be read, or changed since ingest.
    ScanGridError
        A scan is not one 3-D volume, or the sequences differ in shape or affine
        (naming the patient, the sequences and the fix).
    """

    def __init__(self, sequences: Sequence[str], name: str = "image", atol: float = 1e-3) -> None:
        self.sequences = tuple(sequences)
        self.name = name
        self.atol = atol

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        import torch
        from monai.data import MetaTensor

        zero = set(filter(None, str(data.get("zero_filled", "")).split(",")))
        paths = [None if seq in zero else os.fspath(data[seq]) for seq in self.sequences]
        registered = parse_scan_sha256(data.get("scan_sha256"))
        image, affine = read_stacked(paths, names=self.sequences, patient_id=_patient(data), atol=self.atol,
                                     sha256s=[registered.get(seq) for seq in self.sequences])
        out = {k: v for k, v in data.items() if k not in self.sequences}
        out[self.name] = MetaTensor(torch.from_numpy(image), affine=torch.from_numpy(affine))
        return out


def foreground_box(
    image: np.ndarray, threshold: float = 0.0, margin: int = 0
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Bounding box ``(start, end)`` of voxels ``> threshold`` in any channel.

    Same box as MONAI's ``generate_spatial_bounding_box(img, lambda x: x > threshold,
    margin=margin, allow_smaller=True)``: widened by *margin* voxels and clipped to the
    image. Returns ``None`` when no voxel is above the threshold.
    """
    mask = (np.asarray(image) > threshold).any(axis=0)
    start, end = [], []
    for axis in range(mask.ndim):
        profile = mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis))
        hits = np.flatnonzero(profile)
        if hits.size == 0:
            return None
        start.append(max(int(hits[0]) - margin, 0))
        end.append(min(int(hits[-1]) + margin + 1, mask.shape[axis]))
    return tuple(start), tuple(end)


class CropForegroundBoxd:
    """Crop to the bounding box of the brain (voxels above a threshold in any channel).

    The box is :func:`foreground_box`; the crop is MONAI's ``SpatialCrop`` (which keeps
    a ``MetaTensor``'s affine right). Equal to MONAI's ``CropForegroundd(select_fn=x >
    threshold, margin=margin, allow_smaller=True)``, but a volume with no voxel above
    the threshold is an error instead of an empty crop.

    Raises
    ------
    ValueError
        Naming the patient, when nothing is above the threshold.
    """

    def __init__(self, key: str, threshold: float = 0.0, margin: int = 0) -> None:
        self.key = key
        self.threshold = float(threshold)
        self.margin = int(margin)

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        from monai.transforms import SpatialCrop

        out = dict(data)
        image = out[self.key]
        box = foreground_box(np.asarray(image.detach().cpu()), self.threshold, self.margin)
        if box is None:
            raise ValueError(
                f"patient {_patient(data)}: no voxel is above the foreground threshold "
                f"{self.threshold:g} in any sequence (an empty or all-background scan); check "
                "the files, or lower foreground_threshold in the preprocessing config"
            )
        out[self.key] = SpatialCrop(roi_start=box[0], roi_end=box[1])(image)
        return out


class NormalizeNonzerod:
    """z-score each channel over its non-zero voxels; zeros stay 0.

    Equal, bit for bit, to MONAI's ``NormalizeIntensityd(nonzero=True,
    channel_wise=True)``: the same ``torch.mean`` / ``torch.std(unbiased=False)`` of the
    same compacted voxels and the same float32 ``(x - mean) / std`` (a channel with
    ``std == 0`` is only centred), without MONAI's boolean scatter, which cost most of
    the chain's time.
    """

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        import torch
        from monai.data import MetaTensor

        out = dict(data)
        image = out[self.key]
        values = torch.as_tensor(image).as_subclass(torch.Tensor).float()
        array = values.detach().cpu().numpy()
        result = torch.zeros_like(values)
        for c in range(values.shape[0]):
            mask = array[c] != 0
            selected = torch.from_numpy(array[c][mask])
            if selected.numel() == 0:
                continue
            mean = torch.mean(selected).item()
            std = torch.std(selected, unbiased=False).item()
            std = 1.0 if std == 0.0 else std
            torch.where(torch.from_numpy(mask), (values[c] - mean) / std, result[c], out=result[c])
        if isinstance(image, MetaTensor):
            result = MetaTensor(result)
            result.copy_meta_from(image)
        out[self.key] = result
        return out


class FitToSized:
    """Shrink (never enlarge) a volume so it fits *spatial_size*, keeping its aspect.

    The factor ``s = min(1, min_i target_i / shape_i)`` is applied to every axis
    (area interpolation, i.e. averaging), so voxels stay isotropic when they were.
    Padding to the exact size is left to a following ``ResizeWithPadOrCropd``.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of channel-first tensors ``(C, X, Y, Z)``.
    spatial_size : 3 ints
        Box the result must fit in.
    """

    def __init__(self, keys: str | Sequence[str], spatial_size: Sequence[int]) -> None:
        self.keys = (keys,) if isinstance(keys, str) else tuple(keys)
        self.spatial_size = tuple(int(s) for s in spatial_size)

    @staticmethod
    def fitted_shape(shape: Sequence[int], spatial_size: Sequence[int]) -> tuple[int, ...]:
        """Target shape for a crop of *shape* (pure function, testable alone)."""
        scale = min(1.0, min(t / s for t, s in zip(spatial_size, shape)))
        return tuple(max(1, min(t, int(math.floor(s * scale + 1e-6)))) for s, t in zip(shape, spatial_size))

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        from monai.transforms import Resize

        out = dict(data)
        for key in self.keys:
            img = out[key]
            shape = tuple(int(s) for s in img.shape[1:])
            new_shape = self.fitted_shape(shape, self.spatial_size)
            if new_shape != shape:
                out[key] = Resize(spatial_size=new_shape, mode="area")(img)
        return out


# -------------------------------------------------------------------- pipeline
def build_transforms(
    config: PreprocessConfig,
    *,
    perturbation: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    track_meta: bool = False,
) -> Any:
    """The MONAI ``Compose`` that turns a patient record into an encoder input.

    Parameters
    ----------
    config : PreprocessConfig
        The preprocessing to apply.
    perturbation : callable, optional
        A dict transform applied to ``"image"`` (raw intensities, channel-stacked,
        original grid) before reorientation; see :mod:`neurofeat.extract.perturb`.
    track_meta : bool
        Keep ``"image"`` a ``MetaTensor`` with its affine (``True``) or return a plain
        ``torch.Tensor`` (default; cheaper to collate and to cache).

    Returns
    -------
    PreprocessPipeline
        Callable (wrapping a MONAI ``Compose``) that maps ``{"patient_id", <sequence>: path, ...}`` to a dict with ``"image"`` of
        shape ``(len(sequences), *input_size)`` float32 and ``"zero_filled"``.
    """
    import torch
    from monai.transforms import (
        Compose,
        EnsureTyped,
        Orientationd,
        Resized,
        ResizeWithPadOrCropd,
        Spacingd,
    )

    seqs = list(config.sequences)
    steps: list[Any] = [
        CheckSequencesd(seqs, config.missing_sequence),
        LoadSequencesd(seqs, name="image"),
    ]
    if perturbation is not None:
        steps.append(perturbation)
    steps += [
        Orientationd(keys="image", axcodes=config.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys="image", pixdim=config.spacing, mode=config.interpolation, dtype=np.float32),
        CropForegroundBoxd("image", threshold=config.foreground_threshold, margin=config.crop_margin),
    ]
    if config.size_mode == "fit":
        steps += [
            FitToSized("image", config.input_size),
            ResizeWithPadOrCropd(keys="image", spatial_size=config.input_size),
        ]
    elif config.size_mode == "pad_crop":
        steps.append(ResizeWithPadOrCropd(keys="image", spatial_size=config.input_size))
    else:
        steps.append(Resized(keys="image", spatial_size=config.input_size, mode="trilinear"))
    steps += [
        NormalizeNonzerod("image"),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=track_meta),
    ]
    return PreprocessPipeline(Compose(steps), config)


class PreprocessPipeline:
    """A callable wrapper of the MONAI ``Compose`` that re-raises our own errors.

    MONAI wraps any exception inside a transform in ``RuntimeError("applying
    transform ...")``; this unwraps it so that a :class:`MissingSequenceError` or a
    nibabel read error reaches the caller with its own message. Picklable (DataLoader
    workers).

    Attributes
    ----------
    compose : monai.transforms.Compose
        The chain.
    config : PreprocessConfig
        The configuration it implements.
    """

    def __init__(self, compose: Any, config: PreprocessConfig) -> None:
        self.compose = compose
        self.config = config

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self.compose(dict(data))
        except Exception as exc:  # noqa: BLE001 - re-raised, unwrapped
            raise unwrap_transform_error(exc) from None


def unwrap_transform_error(exc: BaseException) -> BaseException:
    """The innermost cause of MONAI's ``RuntimeError("applying transform ...")`` chain.

    Returns *exc* itself when it is not such a wrapper.
    """
    seen = 0
    while (
        isinstance(exc, RuntimeError)
        and str(exc).startswith("applying transform")
        and exc.__cause__ is not None
        and seen < 32
    ):
        exc = exc.__cause__
        seen += 1
    return exc


def preprocess_record(
    record: Mapping[str, Any],
    config: PreprocessConfig,
    *,
    perturbation: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Any:
    """Preprocess one patient record; returns the ``(C, *input_size)`` float32 tensor.

    Convenience over :func:`build_transforms` for tests and one-off use (builds the
    chain each call; use :func:`build_transforms` in loops).

    Raises
    ------
    MissingSequenceError, ScanGridError
        See :class:`CheckSequencesd` and :class:`LoadSequencesd`.
    """
    return build_transforms(config, perturbation=perturbation)(dict(record))["image"]
