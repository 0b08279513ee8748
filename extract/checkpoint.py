"""Encoder checkpoints: a directory of safetensors weights plus a JSON card.

Layout of one backbone (``models/<name>/``)::

    model.safetensors   encoder weights only (never a pickle)
    card.json           how it was made: method, dro, eta, C, groups and final q,
                        architecture, input size, preprocessing and manifest hashes,
                        seed, epochs, wall time, per-epoch loss per group, ...
    loss_curve.png      written by the trainer

``checkpoint_sha256`` is the sha256 of the ``model.safetensors`` bytes. Loading never
unpickles: a file that is not safetensors is refused with a message saying how to
convert it.

Example (a sketch: not run as a doctest)
---------------------------------------
>>> path = save_checkpoint("models/dino_dro", encoder, {"method": "dino", "dro": True})  # doctest: +SKIP
>>> loaded = load_checkpoint("models/dino_dro")  # doctest: +SKIP
>>> loaded.encoder(torch.zeros(1, 4, 32, 32, 32)).shape  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from neurofeat.extract.encoders import EncoderConfig, build_encoder, embedding_dim
from neurofeat.suggest import closest_match

__all__ = [
    "CARD_FILE",
    "WEIGHTS_FILE",
    "CHECKPOINT_FORMAT",
    "TRAINING_CARD_KEYS",
    "BackboneInfo",
    "BackboneNotFoundError",
    "CheckpointError",
    "LoadedCheckpoint",
    "default_models_dir",
    "list_backbones",
    "looks_like_safetensors",
    "load_checkpoint",
    "missing_card_keys",
    "resolve_backbone",
    "save_checkpoint",
]

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
CHECKPOINT_FORMAT = "neurofeat-checkpoint/1"

# Keys a card written by `neurofeat pretrain` must hold (checked by tests and by
# `neurofeat backbones`); save_checkpoint itself adds the architecture keys.
TRAINING_CARD_KEYS: tuple[str, ...] = (
    "name",
    "method",
    "dro",
    "eta",
    "C",
    "group_by",
    "groups",
    "arch",
    "widen_factor",
    "in_channels",
    "input_size",
    "spacing",
    "embedding_dim",
    "preprocessing",
    "preprocess_sha256",
    "manifest_sha256",
    "seed",
    "epochs",
    "wall_time_s",
    "loss_history",
    "checkpoint_sha256",
    "neurofeat_version",
)

_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar")


class CheckpointError(ValueError):
    """A checkpoint directory or file cannot be used (names the path and the fix)."""


class BackboneNotFoundError(LookupError):
    """No backbone of that name under the models directory."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """An encoder loaded from a checkpoint directory.

    Attributes
    ----------
    encoder : ResNetEncoder
        In eval mode, on the requested device.
    config : EncoderConfig
    card : dict
        The parsed ``card.json``.
    sha256 : str
        sha256 of the ``model.safetensors`` bytes (the ``checkpoint_sha256`` stored
        with every embedding).
    path : Path
        The checkpoint directory.
    """

    encoder: torch.nn.Module
    config: EncoderConfig
    card: dict[str, Any]
    sha256: str
    path: Path = field(default=Path("."))


@dataclass(frozen=True)
class BackboneInfo:
    """One entry of :func:`list_backbones`."""

    name: str
    path: Path
    card: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Flat summary: name, path, method, dro, arch, embedding_dim, epochs, sha256."""
        card = self.card
        return {
            "name": self.name,
            "method": card.get("method"),
            "dro": card.get("dro"),
            "arch": card.get("arch"),
            "widen_factor": card.get("widen_factor"),
            "input_size": card.get("input_size"),
            "embedding_dim": card.get("embedding_dim"),
            "epochs": card.get("epochs"),
            "checkpoint_sha256": card.get("checkpoint_sha256"),
            "path": str(self.path),
        }


def default_models_dir() -> Path:
    """``$NEUROFEAT_MODELS`` if set, else ``./models``."""
    return Path(os.environ.get("NEUROFEAT_MODELS", "models"))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"card value of type {type(value).__name__} is not JSON-serialisable: {value!r}")


def _atomic_write_bytes(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; make it like any other file
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(
    out_dir: str | os.PathLike[str],
    encoder: torch.nn.Module,
    card: Mapping[str, Any],
) -> Path:
    """Write ``model.safetensors`` and ``card.json`` into *out_dir*, atomically per file.

    The architecture keys (``arch``, ``in_channels``, ``widen_factor``, ``input_size``,
    ``spacing``, ``conv1_stride``, ``embedding_dim``) are taken from
    ``encoder.config`` and override any value in *card*; ``checkpoint_sha256``,
    ``format`` and ``neurofeat_version`` are added. The weights are written first, so
    a card on disk always describes the weights next to it.

    Parameters
    ----------
    out_dir : path
        Checkpoint directory; created if missing. Its name is the backbone name
        (``dino_dro``).
    encoder : ResNetEncoder
        Any module with a ``config`` attribute of type :class:`EncoderConfig`
        (unwrap DDP/compiled modules first).
    card : mapping
        Training metadata (method, dro, eta, groups, ...). Must be JSON-serialisable
        (numpy values and tuples are converted).

    Returns
    -------
    Path
        The checkpoint directory.

    Raises
    ------
    CheckpointError
        If *encoder* has no ``config`` (not built by :func:`build_encoder`).
    """
    from safetensors.torch import save as st_save

    from neurofeat import __version__

    config = getattr(encoder, "config", None)
    if not isinstance(config, EncoderConfig):
        raise CheckpointError(
            f"save_checkpoint: {type(encoder).__name__} has no EncoderConfig in .config; "
            "build it with neurofeat.extract.encoders.build_encoder (and unwrap "
            "DistributedDataParallel via .module)."
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tensors = {
        name: tensor.detach().to("cpu").contiguous()
        for name, tensor in encoder.state_dict().items()
    }
    # no safetensors metadata: its header order is not stable across processes, and the
    # file's sha256 must depend on the weights alone (the card holds the metadata)
    blob = st_save(tensors)
    _atomic_write_bytes(out / WEIGHTS_FILE, blob)
    sha256 = hashlib.sha256(blob).hexdigest()

    full_card: dict[str, Any] = {"name": out.name}
    full_card.update(dict(card))
    full_card.update(config.to_dict())
    full_card["embedding_dim"] = embedding_dim(config)
    full_card["checkpoint_sha256"] = sha256
    full_card["format"] = CHECKPOINT_FORMAT
    full_card.setdefault("neurofeat_version", __version__)
    text = json.dumps(full_card, indent=2, sort_keys=True, default=_json_default)
    _atomic_write_bytes(out / CARD_FILE, (text + "\n").encode("utf-8"))
    return out


def looks_like_safetensors(path: Path) -> bool:
    """True when the file starts with an 8-byte header length followed by a JSON '{'
    (read without unpickling anything; used by checkpoints and adapters alike)."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    size = path.stat().st_size
    return head[8:9] == b"{" and 0 < header_len <= size - 8


def _refuse_pickle(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a safetensors file (it looks like a pickled torch.save/zip archive); "
        "neurofeat never unpickles checkpoints because unpickling runs arbitrary code. "
        "If you trust it, convert it once: "
        "safetensors.torch.save_file(torch.load(p, weights_only=True), 'model.safetensors')."
    )


def _checkpoint_dir(path: Path) -> Path:
    if path.is_file():
        if path.name == WEIGHTS_FILE:
            return path.parent
        if path.suffix.lower() in _PICKLE_SUFFIXES or not looks_like_safetensors(path):
            raise _refuse_pickle(path)
        raise CheckpointError(
            f"{path}: pass the checkpoint directory (holding {WEIGHTS_FILE} and {CARD_FILE}), "
            "not a single file."
        )
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist.")
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
) -> LoadedCheckpoint:
    """Load an encoder from a checkpoint directory, never unpickling anything.

    Parameters
    ----------
    path : path
        The checkpoint directory (or its ``model.safetensors``).
    device : str or torch.device
        Where to put the encoder.

    Returns
    -------
    LoadedCheckpoint

    Raises
    ------
    CheckpointError
        Missing directory/card/weights; weights that are not safetensors (e.g. a
        ``torch.save`` file renamed); a card whose ``checkpoint_sha256`` does not match
        the weights; weights that do not fit the card's architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    directory = _checkpoint_dir(Path(path))
    weights = directory / WEIGHTS_FILE
    card_path = directory / CARD_FILE
    if not weights.exists():
        stray = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
        hint = (
            f" Found {stray}: pickled weights are refused; convert them to {WEIGHTS_FILE}."
            if stray
            else ""
        )
        raise CheckpointError(f"{directory}: no {WEIGHTS_FILE}.{hint}")
    if not card_path.exists():
        raise CheckpointError(
            f"{directory}: no {CARD_FILE}; a checkpoint needs its card (architecture, "
            "input size) to be rebuilt. Re-save it with neurofeat.extract.checkpoint.save_checkpoint."
        )
    if not looks_like_safetensors(weights):
        raise _refuse_pickle(weights)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{card_path}: not valid JSON ({exc}).") from exc
    if not isinstance(card, dict):
        raise CheckpointError(f"{card_path}: expected a JSON object, got {type(card).__name__}.")

    blob = weights.read_bytes()
    sha256 = hashlib.sha256(blob).hexdigest()
    recorded = card.get("checkpoint_sha256")
    if recorded is not None and recorded != sha256:
        raise CheckpointError(
            f"{weights}: sha256 {sha256[:12]}… does not match the card's checkpoint_sha256 "
            f"{str(recorded)[:12]}…; the weights were changed or partly written. Re-run "
            "`neurofeat pretrain` or restore the original file."
        )
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc}).") from exc

    try:
        config = EncoderConfig.from_dict(card)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{card_path}: cannot rebuild the encoder ({exc}).") from exc
    encoder = build_encoder(config)
    missing, unexpected = encoder.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: weights do not fit a {config.arch} (widen_factor={config.widen_factor}, "
            f"in_channels={config.in_channels}) as the card says; missing keys "
            f"{list(missing)[:5]}, unexpected keys {list(unexpected)[:5]}."
        )
    encoder.to(device).eval()
    return LoadedCheckpoint(encoder=encoder, config=config, card=card, sha256=sha256, path=directory)


def missing_card_keys(card: Mapping[str, Any]) -> list[str]:
    """Keys of :data:`TRAINING_CARD_KEYS` absent from *card* (empty = complete)."""
    return [key for key in TRAINING_CARD_KEYS if key not in card]


def _is_checkpoint_dir(path: Path) -> bool:
    return path.is_dir() and (path / WEIGHTS_FILE).exists() and (path / CARD_FILE).exists()


def list_backbones(models_dir: str | os.PathLike[str] | None = None) -> list[BackboneInfo]:
    """Backbones (checkpoint directories) under *models_dir*, sorted by name.

    Directories without both ``model.safetensors`` and ``card.json`` are skipped; a
    card that is not valid JSON is listed with ``{"error": ...}`` as its card.
    """
    root = Path(models_dir) if models_dir is not None else default_models_dir()
    if not root.is_dir():
        return []
    found: list[BackboneInfo] = []
    for child in sorted(root.iterdir()):
        if not _is_checkpoint_dir(child):
            continue
        try:
            card = json.loads((child / CARD_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            card = {"error": f"unreadable card.json: {exc}"}
        found.append(BackboneInfo(name=child.name, path=child, card=card))
    return found


def resolve_backbone(
    name: str,
    models_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The checkpoint directory of backbone *name*.

    *name* is either a path to a checkpoint directory or a backbone name looked up as
    ``<models_dir>/<name>`` (``models_dir`` default: ``$NEUROFEAT_MODELS`` or
    ``./models``).

    Raises
    ------
    BackboneNotFoundError
        Naming the directory searched, the closest available name and the
        command that creates it.
    """
    direct = Path(name)
    if _is_checkpoint_dir(direct):
        return direct
    root = Path(models_dir) if models_dir is not None else default_models_dir()
    candidate = root / name
    if _is_checkpoint_dir(candidate):
        return candidate
    pickles = sorted(q.name for q in candidate.glob("*") if q.suffix.lower() in _PICKLE_SUFFIXES) \
        if candidate.is_dir() else []
    if pickles and not (candidate / WEIGHTS_FILE).exists():
        raise BackboneNotFoundError(
            f"{candidate} holds {', '.join(pickles)} but no {WEIGHTS_FILE}: neurofeat reads weights "
            "from safetensors and never unpickles a checkpoint. For a checkpoint trained "
            "elsewhere use `neurofeat extract --backbone NAME --checkpoint "
            f"{candidate / pickles[0]} --adapter monai-resnet|medicalnet|brainiac|swinunetr` "
            "(loaded with torch.load(weights_only=True)); a neurofeat backbone folder needs "
            f"{WEIGHTS_FILE} and {CARD_FILE} (neurofeat pretrain writes both).")
    available = [info.name for info in list_backbones(root)]
    close = closest_match(name, available, cutoff=0.6)
    hint = f" Did you mean {close!r}?" if close else ""
    listing = ", ".join(available) if available else "none"
    method = name.removesuffix("_dro")
    dro_flag = " --dro" if name.endswith("_dro") else ""
    raise BackboneNotFoundError(
        f"no backbone {name!r} in {root} (available: {listing}).{hint} Train it with "
        f"`neurofeat pretrain --method {method}{dro_flag} --out {root / name}` or pass "
        "--models-dir."
    )

