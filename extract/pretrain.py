"""The encoder trainer of `neurofeat pretrain`: SSL method (+ optional Group-DRO).

``pretrain(config, cohort, out_dir)`` trains ``config.method`` on the cohort and
writes a backbone directory (:mod:`neurofeat.extract.checkpoint`): ``model.safetensors``
(encoder only), ``card.json`` and ``loss_curve.png``/``.svg``.

Determinism: the encoder is initialised from ``seed`` (identical on every rank); the
data order comes from a seeded ``DistributedSampler`` (also in one process), every
augmented view from ``(seed, epoch, patient index, view)``, and the global torch RNG
(MAE masks) is re-seeded from ``(seed, epoch, rank)`` at the start of every epoch. A
run stopped after epoch k and resumed therefore continues exactly as if it had not
stopped (bit-exact on CPU; on GPU up to non-deterministic kernels).

Resume: after every epoch rank 0 writes ``<out>/.pretrain_state/`` (method + DRO +
optimiser state in safetensors, counters and history in JSON; never a pickle). A new
run with the same configuration continues from the last finished epoch; the state is
removed when training finishes unless ``keep_state``.

GPU: autocast in bf16 (fp16 with a GradScaler where bf16 is unsupported) and
channels-last-3d memory format; ``torchrun --nproc-per-node N`` runs DDP (nccl on GPU,
gloo on CPU) with Group-DRO statistics all-reduced; only rank 0 writes. The CPU
paths are tested; the CUDA paths (autocast, channels-last, nccl) are written to the
PyTorch API but untested on a GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from neurofeat.extract import distributed as dist_utils
from neurofeat.extract.augment import AugmentConfig, MultiViewAugment
from neurofeat.extract.checkpoint import CARD_FILE, WEIGHTS_FILE, save_checkpoint
from neurofeat.extract.devices import resolve_device
from neurofeat.extract.dro import DROStep, GroupDRO, erm_objective
from neurofeat.extract.encoders import EncoderConfig, build_encoder
from neurofeat.extract.loss_curve import plot_loss_curve
from neurofeat.extract.methods import METHOD_NAMES, build_method
from neurofeat.extract.pretrain_data import (
    EpochIndexSampler,
    GroupBalancedSampler,
    PretrainCohort,
    PretrainDataset,
)
from neurofeat.extract.pretrain_state import STATE_DIR, load_state, save_state
from neurofeat.progress import NoProgress, progress_bar

__all__ = [
    "EpochEmbeddings",
    "EpochHook",
    "PretrainConfig",
    "PretrainError",
    "PretrainResult",
    "STATE_DIR",
    "backbone_name",
    "plot_loss_curve",
    "pretrain",
    "q_trajectory",
]

_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_SCHEDULES = ("constant", "cosine")
# fields that may change between a run and its resumption
_RESUMABLE_FIELDS = ("epochs", "num_workers", "device", "keep_state", "cache", "cache_dir", "cache_budget_gb")


class PretrainError(RuntimeError):
    """Pretraining cannot start or continue (the message says why and what to do)."""


def backbone_name(method: str, dro: bool) -> str:
    """``<method>`` or ``<method>_dro`` (the name `neurofeat extract` knows it by)."""
    return f"{method}_dro" if dro else method


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pretraining run.

    Parameters
    ----------
    method : {'simclr', 'moco', 'byol', 'dino', 'mae'}
    dro : bool
        Group-DRO over ``group_by`` groups instead of the mean loss (ERM).
    group_by : tuple of str
        Columns of the store's ``clinical`` view / the manifest defining the groups
        (per-group losses are logged also without DRO).
    eta : float
        Group-DRO step size of q (Sagawa et al.: 0.01).
    adjustment : float
        Group-DRO generalisation adjustment C (0 = none).
    encoder : EncoderConfig
    preprocess : PreprocessConfig or None
        ``None`` = the default preprocessing at the encoder's input size and spacing.
    augment : AugmentConfig
    method_params : mapping
        Method hyper-parameters overriding the method's defaults (e.g.
        ``{"queue_size": 1024}``); stored as a sorted tuple of items.
    epochs, batch_size : int
        Epochs (NeuroRAD-FM: 100) and per-rank batch size.
    lr, weight_decay : float
        AdamW learning rate (NeuroRAD-FM: 1e-5) and weight decay.
    schedule : {'constant', 'cosine'}
        Learning-rate schedule after ``warmup_epochs`` of linear warm-up.
    seed : int
    device : str
        ``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'``, ``'cuda:1'``.
    precision : {'auto', 'fp32', 'bf16', 'fp16'}
        Autocast dtype; ``'auto'`` = bf16 on GPUs that support it, else fp16 on GPU,
        fp32 on CPU.
    channels_last : bool or None
        channels-last-3d memory format; ``None`` = on GPU only.
    num_workers : int
        DataLoader workers (persistent: each keeps its memory cache across epochs).
    cache : bool or None
        Keep preprocessed volumes in memory (per worker); ``None`` = when the cohort's
        volumes, times the number of workers, fit in ``cache_budget_gb``.
    cache_dir : str or None
        On-disk volume cache shared with `neurofeat extract` (store cohorts only).
    cache_budget_gb : float
        Memory budget of the automatic in-memory cache.
    keep_state : bool
        Keep the resumable training state after the last epoch.
    group_balanced : bool or None
        Sample every group equally often (with replacement), as Sagawa et al. train
        Group-DRO; ``None`` = on with ``dro``, off without.
    recipe : str or None
        Name of the recipe (:mod:`neurofeat.extract.recipes`) the settings came from,
        recorded in the card.
    """

    method: str = "dino"
    dro: bool = False
    group_by: tuple[str, ...] = ("site",)
    eta: float = 0.01
    adjustment: float = 0.0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    preprocess: Any = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    method_params: Any = ()
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-5
    weight_decay: float = 0.05
    schedule: str = "constant"
    warmup_epochs: int = 0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    num_workers: int = 0
    cache: bool | None = None
    cache_dir: str | None = None
    cache_budget_gb: float = 2.0
    keep_state: bool = False
    group_balanced: bool | None = None
    recipe: str | None = None

    def __post_init__(self) -> None:
        from neurofeat.extract.preprocess import PreprocessConfig

        method = str(self.method).lower()
        if method not in METHOD_NAMES:
            raise ValueError(f"unknown pretraining method {self.method!r}; use one of {list(METHOD_NAMES)}.")
        object.__setattr__(self, "method", method)
        group_by = (self.group_by,) if isinstance(self.group_by, str) else tuple(self.group_by)
        object.__setattr__(self, "group_by", tuple(str(g) for g in group_by))
        if self.dro and not self.group_by:
            raise ValueError("Group-DRO needs at least one --group-by column (e.g. site).")
        params = dict(self.method_params) if self.method_params else {}
        object.__setattr__(self, "method_params", tuple(sorted(params.items())))
        if self.preprocess is None:
            object.__setattr__(
                self, "preprocess",
                PreprocessConfig(input_size=self.encoder.input_size, spacing=self.encoder.spacing),
            )
        elif isinstance(self.preprocess, Mapping):
            object.__setattr__(self, "preprocess", PreprocessConfig.from_dict(self.preprocess))
        if self.preprocess.in_channels != self.encoder.in_channels:
            raise ValueError(
                f"preprocessing yields {self.preprocess.in_channels} channels {self.preprocess.sequences} but the "
                f"encoder expects in_channels={self.encoder.in_channels}."
            )
        if tuple(self.preprocess.input_size) != (self.encoder.input_size,) * 3:
            raise ValueError(
                f"preprocessing input_size {self.preprocess.input_size} differs from the encoder's "
                f"{self.encoder.input_size}^3."
            )
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {self.precision!r}.")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if int(self.batch_size) < 2:
            raise ValueError("batch_size must be >= 2 (batch norm and contrastive losses need 2 samples).")
        if not float(self.lr) > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}.")

    @property
    def balanced_sampling(self) -> bool:
        """Whether batches are drawn group-balanced (see ``group_balanced``)."""
        return self.dro if self.group_balanced is None else bool(self.group_balanced)

    @property
    def name(self) -> str:
        """Default backbone name (``dino`` / ``dino_dro``)."""
        return backbone_name(self.method, self.dro)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the configuration."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "to_dict"):
                value = value.to_dict()
            elif f.name == "method_params":
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in value}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def resume_key(self) -> str:
        """sha256 of the configuration minus the fields a resumed run may change."""
        values = {k: v for k, v in self.to_dict().items() if k not in _RESUMABLE_FIELDS}
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class PretrainResult:
    """Outcome of :func:`pretrain`.

    Attributes
    ----------
    path : Path
        The backbone directory.
    name : str
        Backbone name.
    card : dict
        The checkpoint card as written.
    checkpoint_sha256 : str
    history : tuple of dict
        Per epoch: ``epoch``, ``loss``, ``lr``, ``group_loss`` {group: mean loss},
        ``q`` {group: weight}.
    resumed_from : int
        Number of epochs already done when this run started (0 = fresh).
    curve : tuple of dict
        What the epoch hook returned, per evaluated epoch: ``{"epoch": k, **values}``
        (epoch 0 = the initial, untrained encoder); empty without a hook.
    """

    path: Path
    name: str
    card: dict[str, Any]
    checkpoint_sha256: str
    history: tuple[dict[str, Any], ...]
    resumed_from: int = 0
    curve: tuple[dict[str, Any], ...] = ()

    def to_frame(self) -> Any:
        """Long table: epoch, group, n_patients, loss, q (one row per epoch and group)."""
        import pandas as pd

        sizes = {g: v["n"] for g, v in self.card.get("groups", {}).items()}
        rows = [
            {"epoch": h["epoch"], "group": g, "n_patients": sizes.get(g), "loss": h["group_loss"].get(g),
             "q": h["q"].get(g)}
            for h in self.history for g in h["group_loss"]
        ]
        return pd.DataFrame(rows, columns=["epoch", "group", "n_patients", "loss", "q"])

    def summary(self) -> str:
        """One paragraph: backbone, method, epochs, final loss and q."""
        last = self.history[-1] if self.history else {"loss": float("nan"), "q": {}}
        q_text = ", ".join(f"{g}={q:.3f}" for g, q in last["q"].items())
        return (
            f"backbone {self.name} ({self.card['method']}{' + Group-DRO' if self.card['dro'] else ''}, "
            f"{self.card['arch']} x{self.card['widen_factor']}, {self.card['input_size']}^3): "
            f"{len(self.history)} epochs, final loss {last['loss']:.4f}; q: {q_text}; "
            f"checkpoint_sha256 {self.checkpoint_sha256[:12]}; written to {self.path}"
        )


@dataclass(frozen=True, eq=False)
class EpochEmbeddings:
    """The encoder's embeddings of the whole cohort after some epochs (handed to a hook).

    Attributes
    ----------
    epoch : int
        Epochs done (0 = the initial, untrained encoder).
    embeddings : ndarray, shape (n_patients, embedding_dim), float32
        Unaugmented preprocessed volumes through the encoder in eval mode, in cohort order.
    patient_ids, groups : tuple of str
        Patient id and group label (``group_by``) of every row.
    """

    epoch: int
    embeddings: np.ndarray
    patient_ids: tuple[str, ...]
    groups: tuple[str, ...]


#: Called on rank 0 with the cohort's embeddings every ``hook_every`` epochs (and at
#: epoch 0 and the last epoch); returns plain numbers to record (``None``: nothing).
#: The embeddings are computed in memory only; nothing is written to the store.
EpochHook = Callable[[EpochEmbeddings], "Mapping[str, float] | None"]


def q_trajectory(history: list[dict[str, Any]] | tuple[dict[str, Any], ...],
                 group_names: list[str] | None = None) -> dict[str, list[float]]:
    """Group-DRO weight q of every group per epoch, starting at the uniform epoch-0 value.

    Returns ``{"epoch": [0, 1, ...], group: [q0, q1, ...], ...}`` (compact, for the card).
    """
    groups = list(group_names) if group_names is not None else (list(history[0]["q"]) if history else [])
    out: dict[str, list[float]] = {"epoch": [0] + [int(h["epoch"]) for h in history]}
    for g in groups:
        out[g] = [round(1.0 / len(groups), 6)] + [round(float(h["q"].get(g, float("nan"))), 6) for h in history]
    return out


# ---------------------------------------------------------------------------- helpers
def _resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type != "cuda" and precision == "fp16":
        raise PretrainError("fp16 autocast needs a GPU; use --precision fp32 or bf16 on CPU.")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    text = f"epoch-rng:{seed}:{epoch}:{rank}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") % (2**63 - 1)


def _lr_at(config: PretrainConfig, step: int, steps_per_epoch: int) -> float:
    total = config.epochs * steps_per_epoch
    warmup = config.warmup_epochs * steps_per_epoch
    if warmup and step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr



def pretrain(
    config: PretrainConfig,
    cohort: PretrainCohort,
    out_dir: str | os.PathLike[str],
    *,
    preprocess: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    epoch_hook: EpochHook | None = None,
    hook_every: int = 1,
) -> PretrainResult | None:
    """Train an encoder and write its backbone directory.

    Parameters
    ----------
    config : PretrainConfig
    cohort : PretrainCohort
        Patients (see :mod:`neurofeat.extract.pretrain_data`).
    out_dir : path
        Backbone directory (its name is the backbone name, e.g. ``models/dino_dro``).
    preprocess : callable, optional
        Record -> ``{"image": (C, S, S, S)}``; default: the extraction stage's
        pipeline for ``config.preprocess``.
    overwrite : bool
        Replace an existing backbone / discard a resumable state of another
        configuration.
    progress : bool
        Show a rich progress bar (rank 0).
    stop_after_epoch : int, optional
        Stop (state saved, no checkpoint written) once this many epochs are done;
        returns None. For tests of resumption and for time-boxed jobs.
    epoch_hook : callable, optional
        :data:`EpochHook`: called on rank 0 with the cohort's embeddings before the
        first epoch, after every *hook_every* epochs and after the last one (a learning
        curve). It does not change training: the encoder runs in eval mode under
        inference mode and no random stream is drawn. Its values are kept in the
        resumable state, the result's ``curve`` and the card's ``learning_curve``.
    hook_every : int
        Epochs between hook calls (>= 1).

    Returns
    -------
    PretrainResult or None
        None on ranks other than 0 and when stopped early.

    Raises
    ------
    PretrainError
        Existing backbone without ``overwrite``; a resumable state from another
        configuration; too few patients for a batch; a non-finite loss.
    """
    if int(hook_every) < 1:
        raise ValueError(f"hook_every must be >= 1, got {hook_every}.")
    out = Path(out_dir)
    state_dir = out / STATE_DIR
    device = resolve_device(config.device)
    hook = _Hook(epoch_hook, int(hook_every)) if epoch_hook is not None else None
    with dist_utils.process_group(device):
        return _train(config, cohort, out, state_dir, device, preprocess, overwrite, progress, stop_after_epoch,
                      hook)


def _check_out_dir(config: PretrainConfig, out: Path, state_dir: Path, overwrite: bool, is_rank0: bool) -> bool:
    """Decide fresh vs resume; returns True to resume."""
    if state_dir.exists() and (state_dir / "progress.json").exists():
        meta = json.loads((state_dir / "progress.json").read_text())
        if meta.get("resume_key") == config.resume_key():
            return True
        if not overwrite:
            previous = meta.get("config", {})
            now = config.to_dict()
            changed = sorted(k for k in now if k not in _RESUMABLE_FIELDS and previous.get(k) != now[k])
            raise PretrainError(
                f"{out} holds an unfinished run with a different configuration (changed: {changed}); "
                "pass --overwrite to start afresh or choose another --out."
            )
        if is_rank0:
            shutil.rmtree(state_dir)
        return False
    if (out / WEIGHTS_FILE).exists() or (out / CARD_FILE).exists():
        if not overwrite:
            raise PretrainError(
                f"{out} already holds a trained backbone; pass --overwrite to replace it or choose another --out."
            )
    return False


# --------------------------------------------------------------------------- trainer
@dataclass(frozen=True)
class _BatchPlan:
    """How a rank's share of the cohort is cut into steps."""

    n_patients: int
    per_rank: int
    batch_size: int
    drop_last: bool
    steps_per_epoch: int


def _batch_plan(config: PretrainConfig, n_patients: int, world: int) -> _BatchPlan:
    """Batch size, drop_last and steps per epoch for *world* ranks (full batches of >= 2 only)."""
    per_rank = math.ceil(n_patients / world)
    if per_rank < 2:
        raise PretrainError(
            f"{n_patients} patient(s) over {world} rank(s) leaves {per_rank} per rank; need at least 2 per batch."
        )
    batch_size = min(config.batch_size, per_rank)
    drop_last = per_rank > batch_size  # full batches only; a 1-sample batch would break batch norm
    steps_per_epoch = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    return _BatchPlan(n_patients, per_rank, batch_size, drop_last, steps_per_epoch)


@dataclass
class _Trainer:
    """The built pieces of one training run (what every epoch and step uses)."""

    config: PretrainConfig
    cohort: PretrainCohort
    plan: _BatchPlan
    device: torch.device
    rank: int
    world: int
    method: torch.nn.Module
    model: torch.nn.Module  # the method, DDP-wrapped under torchrun
    dro: GroupDRO | None
    optimizer: torch.optim.Optimizer
    scaler: Any
    amp_dtype: torch.dtype | None
    channels_last: bool
    dataset: Any = None
    sampler: Any = None
    loader: Any = None

    @property
    def group_names(self) -> list[str]:
        return list(self.cohort.group_names)

    def final_q(self) -> list[float]:
        """Group-DRO weights now (uniform without DRO)."""
        n_groups = len(self.cohort.group_names)
        return self.dro.q.detach().cpu().tolist() if self.dro is not None else [1.0 / n_groups] * n_groups


@dataclass
class _Progress:
    """Where training stands: epochs done, per-epoch history, wall time before this run,
    the epoch hook's values so far."""

    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_before: float = 0.0
    curve: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Hook:
    """The epoch hook and how often it runs."""

    call: EpochHook
    every: int

    def due(self, epochs_done: int, total: int) -> bool:
        return epochs_done == 0 or epochs_done == total or epochs_done % self.every == 0


def _cohort_embeddings(trainer: _Trainer, epochs_done: int) -> EpochEmbeddings:
    """Every patient's unaugmented volume through the encoder (eval mode), in cohort order."""
    from neurofeat.extract.embed import embed_batch, prepare_encoder

    encoder = prepare_encoder(trainer.method.encoder, trainer.device)
    chunks = []
    n = len(trainer.cohort)
    step = max(1, trainer.plan.batch_size)
    for start in range(0, n, step):
        images = torch.stack([trainer.dataset.image(i) for i in range(start, min(n, start + step))])
        chunks.append(embed_batch(encoder, images, trainer.device))
    trainer.method.train()
    records, names = trainer.cohort.records, trainer.cohort.group_names
    return EpochEmbeddings(
        epoch=epochs_done, embeddings=np.concatenate(chunks, axis=0),
        patient_ids=tuple(str(r["patient_id"]) for r in records),
        groups=tuple(str(names[int(g)]) for g in trainer.cohort.group_index),
    )


def _run_hook(hook: _Hook | None, trainer: _Trainer, progress: _Progress, epochs_done: int) -> None:
    """Rank 0: call the hook when due and record what it returns."""
    if hook is None or trainer.rank != 0 or not hook.due(epochs_done, trainer.config.epochs):
        return
    if any(int(entry["epoch"]) == epochs_done for entry in progress.curve):
        return  # already evaluated before a resumption
    values = hook.call(_cohort_embeddings(trainer, epochs_done))
    if values is not None:
        progress.curve.append({"epoch": epochs_done, **{str(k): v for k, v in values.items()}})


def _train(config: PretrainConfig, cohort: PretrainCohort, out: Path, state_dir: Path, device: torch.device,
           preprocess: Any, overwrite: bool, show_progress: bool,
           stop_after_epoch: int | None, hook: _Hook | None = None) -> PretrainResult | None:
    rank, world = dist_utils.rank(), dist_utils.world_size()
    resume = _check_out_dir(config, out, state_dir, overwrite, rank == 0)
    dist_utils.barrier()
    if config.preprocess.in_channels != config.encoder.in_channels:  # pragma: no cover - checked in config
        raise PretrainError("preprocess/encoder channel mismatch")
    plan = _batch_plan(config, len(cohort), world)
    trainer, progress = _build_trainer(config, cohort, plan, device, rank, world, state_dir if resume else None)
    _attach_loader(trainer, preprocess)
    t_start = time.perf_counter()
    if progress.start_epoch == 0:
        _run_hook(hook, trainer, progress, 0)
    with progress_bar(show_progress and rank == 0) as bar:
        task = bar.add_task("pretraining", total=(config.epochs - progress.start_epoch) * plan.steps_per_epoch)
        for epoch in range(progress.start_epoch, config.epochs):
            progress.history.append(_train_epoch(trainer, epoch, bar, task))
            _run_hook(hook, trainer, progress, epoch + 1)
            if rank == 0:
                save_state(state_dir, trainer.method, trainer.dro, trainer.optimizer, trainer.scaler, {
                    "epochs_done": epoch + 1, "history": progress.history, "curve": progress.curve,
                    "wall_time_s": progress.wall_before + time.perf_counter() - t_start,
                    "resume_key": config.resume_key(), "config": config.to_dict(),
                })
            dist_utils.barrier()
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
                return None
    wall_time = progress.wall_before + time.perf_counter() - t_start
    if rank != 0:
        dist_utils.barrier()
        return None
    return _write_backbone(trainer, out, state_dir, progress, wall_time)


def _build_trainer(config: PretrainConfig, cohort: PretrainCohort, plan: _BatchPlan, device: torch.device,
                   rank: int, world: int, resume_from: Path | None) -> tuple[_Trainer, _Progress]:
    """Seeded encoder + method (+ Group-DRO), optimiser and autocast, resumed state, DDP."""
    torch.manual_seed(config.seed)  # same initial weights on every rank
    np.random.seed(config.seed % (2**32))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    method = build_method(config.method, build_encoder(config.encoder), **_method_params(config, plan, world))
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    method.to(device)
    if channels_last:
        method.to(memory_format=torch.channels_last_3d)
    dro = None
    if config.dro:
        dro = GroupDRO(len(cohort.group_names), eta=config.eta, adjustment=config.adjustment,
                       group_counts=cohort.group_counts.tolist(), group_names=cohort.group_names).to(device)
    trainable = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    amp_dtype = _resolve_precision(config.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16) if device.type == "cuda" else None
    progress = _Progress()
    if resume_from is not None:
        meta = load_state(resume_from, method, dro, optimizer, scaler, device)
        progress = _Progress(int(meta["epochs_done"]), list(meta["history"]), float(meta.get("wall_time_s", 0.0)),
                             list(meta.get("curve", [])))
    model: torch.nn.Module = method
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(method, device_ids=[device.index] if device.type == "cuda" else None)
    trainer = _Trainer(config=config, cohort=cohort, plan=plan, device=device, rank=rank, world=world, method=method,
                       model=model, dro=dro, optimizer=optimizer, scaler=scaler, amp_dtype=amp_dtype,
                       channels_last=channels_last)
    return trainer, progress


def _method_params(config: PretrainConfig, plan: _BatchPlan, world: int) -> dict[str, Any]:
    """The method's hyper-parameters; MoCo's queue fits the cohort (at least one global batch)."""
    params = dict(config.method_params)
    if config.method == "moco":
        requested = int(params.get("queue_size", 4096))
        global_batch = plan.batch_size * world
        fitting = max(global_batch, min(requested, plan.n_patients - global_batch))
        params["queue_size"] = 0 if requested == 0 else fitting
    return params


def _attach_loader(trainer: _Trainer, preprocess: Any) -> None:
    """Augmented views of the cohort, sharded (and group-balanced with DRO) per rank."""
    from neurofeat.extract.preprocess import build_transforms

    config, plan = trainer.config, trainer.plan
    augment = MultiViewAugment(trainer.method.view_specs(config.encoder.input_size), config.augment)
    pipeline = preprocess if preprocess is not None else build_transforms(config.preprocess)
    cache = config.cache
    if cache is None:
        volume_bytes = config.encoder.in_channels * config.encoder.input_size**3 * 4
        copies = max(1, config.num_workers)
        cache = plan.per_rank * volume_bytes * copies <= config.cache_budget_gb * 2**30
    dataset = PretrainDataset(trainer.cohort, pipeline, augment, seed=config.seed, cache=cache,
                              cache_dir=config.cache_dir, preprocess_sha256=config.preprocess.sha256())
    if config.balanced_sampling:
        base_sampler: Any = GroupBalancedSampler(trainer.cohort.group_index, num_replicas=trainer.world,
                                                 rank=trainer.rank, seed=config.seed)
    else:
        base_sampler = torch.utils.data.distributed.DistributedSampler(
            dataset, num_replicas=trainer.world, rank=trainer.rank, shuffle=True, seed=config.seed, drop_last=False
        )
    sampler = EpochIndexSampler(base_sampler)
    loader_kwargs: dict[str, Any] = {}
    if config.num_workers > 0:
        loader_kwargs = {"num_workers": config.num_workers, "persistent_workers": True,
                         "pin_memory": trainer.device.type == "cuda"}
    trainer.dataset, trainer.sampler = dataset, sampler
    trainer.loader = torch.utils.data.DataLoader(dataset, batch_size=plan.batch_size, sampler=sampler,
                                                 drop_last=plan.drop_last, **loader_kwargs)


def _train_epoch(trainer: _Trainer, epoch: int, bar: Any, task: Any) -> dict[str, Any]:
    """One epoch over this rank's batches; returns its history entry."""
    from rich.markup import escape

    config, steps_per_epoch = trainer.config, trainer.plan.steps_per_epoch
    group_names = trainer.group_names
    trainer.method.train()
    trainer.sampler.set_epoch(epoch)
    trainer.dataset.set_epoch(epoch)
    batches = iter(trainer.loader)  # creating an iterator may draw from the global RNG: seed after
    torch.manual_seed(_epoch_seed(config.seed, epoch, trainer.rank))
    sums = torch.zeros(len(group_names), dtype=torch.float64)
    counts = torch.zeros(len(group_names), dtype=torch.float64)
    objective_total = 0.0
    n_steps = 0
    lr = config.lr
    for step_in_epoch, batch in enumerate(batches):
        global_step = epoch * steps_per_epoch + step_in_epoch
        lr = _lr_at(config, global_step, steps_per_epoch)
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        outcome = _train_step(trainer, batch, epoch, step_in_epoch, global_step)
        present = outcome.group_count.detach().cpu().double()
        sums += torch.nan_to_num(outcome.group_loss.detach().cpu().double(), nan=0.0) * present
        counts += present
        objective_total += outcome.objective_value
        n_steps += 1
        description = None
        if not isinstance(bar, NoProgress):  # no per-step text (nor a GPU sync for q) unseen
            q_text = ("" if trainer.dro is None else " q(" + " ".join(
                f"{g}={q:.2f}" for g, q in zip(group_names, outcome.q.tolist())) + ")")
            description = escape(f"epoch {epoch + 1}/{config.epochs} loss "
                                 f"{outcome.objective_value:.4f}{q_text}")
        bar.update(task, advance=1, description=description)
    return {
        "epoch": epoch + 1,
        "loss": objective_total / max(1, n_steps),
        "lr": lr,
        "group_loss": {g: (float(s / c) if c > 0 else None)
                       for g, s, c in zip(group_names, sums.tolist(), counts.tolist())},
        "q": {g: float(q) for g, q in zip(group_names, trainer.final_q())},
    }


def _train_step(trainer: _Trainer, batch: Mapping[str, Any], epoch: int, step_in_epoch: int,
                global_step: int) -> DROStep:
    """Forward (autocast), the ERM or Group-DRO objective, backward and optimiser step."""
    device, amp_dtype = trainer.device, trainer.amp_dtype
    memory = torch.channels_last_3d if trainer.channels_last else torch.contiguous_format
    views = [v.to(device, non_blocking=True, memory_format=memory) for v in batch["views"]]
    groups = batch["group"].to(device)
    with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        per_sample = trainer.model(views)
    per_sample = per_sample.float()
    n_groups = len(trainer.cohort.group_names)
    outcome: DROStep = (trainer.dro(per_sample, groups) if trainer.dro is not None
                        else erm_objective(per_sample, groups, n_groups))
    if not math.isfinite(outcome.objective_value):
        raise PretrainError(
            f"non-finite loss at epoch {epoch + 1}, step {step_in_epoch + 1} (patients "
            f"{[trainer.cohort.records[i]['patient_id'] for i in batch['index'].tolist()]}); "
            "lower --lr or use --precision fp32."
        )
    trainer.optimizer.zero_grad(set_to_none=True)
    scaler = trainer.scaler
    if scaler is not None and scaler.is_enabled():
        scaler.scale(outcome.objective).backward()
        scaler.step(trainer.optimizer)
        scaler.update()
    else:
        outcome.objective.backward()
        trainer.optimizer.step()
    trainer.method.after_step((global_step + 1) / (trainer.config.epochs * trainer.plan.steps_per_epoch))
    return outcome


def _write_backbone(trainer: _Trainer, out: Path, state_dir: Path, progress: _Progress,
                    wall_time: float) -> PretrainResult:
    """Rank 0: checkpoint + card + loss curve; drop the resumable state unless kept."""
    config = trainer.config
    card = _card(trainer, out, progress.history, wall_time, progress.curve)
    path = save_checkpoint(out, trainer.method.encoder, card)
    plot_loss_curve(progress.history, out / "loss_curve", title=f"{out.name}: {config.method}"
                    + (" + Group-DRO" if config.dro else ""))
    written = json.loads((path / CARD_FILE).read_text())
    if not config.keep_state and state_dir.exists():
        shutil.rmtree(state_dir)
    dist_utils.barrier()
    return PretrainResult(path=path, name=out.name, card=written, checkpoint_sha256=written["checkpoint_sha256"],
                          history=tuple(progress.history), resumed_from=progress.start_epoch,
                          curve=tuple(progress.curve))


def _card(trainer: _Trainer, out: Path, history: list[dict[str, Any]], wall_time: float,
          curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint card: how the encoder was made (method, DRO, groups and q, data, schedule, ...)."""
    from neurofeat import __version__

    config, cohort, device, amp_dtype = trainer.config, trainer.cohort, trainer.device, trainer.amp_dtype
    method, channels_last, world = trainer.method, trainer.channels_last, trainer.world
    group_names, final_q = trainer.group_names, trainer.final_q()
    n_patients, batch_size = trainer.plan.n_patients, trainer.plan.batch_size
    return {
        "name": out.name,
        "method": config.method,
        "method_params": method.hparams(),
        "dro": config.dro,
        "eta": config.eta if config.dro else None,
        "C": config.adjustment if config.dro else None,
        "group_by": list(config.group_by),
        "recipe": config.recipe,
        "sampling": "group-balanced" if config.balanced_sampling else "shuffled",
        "groups": {g: {"n": int(n), "q": float(q)}
                   for g, n, q in zip(group_names, cohort.group_counts.tolist(), final_q)},
        "preprocessing": config.preprocess.to_dict(),
        "preprocess_sha256": config.preprocess.sha256(),
        "manifest_sha256": cohort.manifest_sha256,
        "data_source": cohort.source,
        "n_patients": n_patients,
        "augment": config.augment.to_dict(),
        "seed": config.seed,
        "epochs": config.epochs,
        "batch_size": batch_size,
        "world_size": world,
        "optimizer": "adamw",
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "schedule": config.schedule,
        "warmup_epochs": config.warmup_epochs,
        "precision": "fp32" if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
        "channels_last": channels_last,
        "device": device.type,
        "wall_time_s": round(wall_time, 3),
        "loss_history": history,
        "q_trajectory": q_trajectory(history, group_names) if config.dro else None,
        "learning_curve": curve,
        "neurofeat_version": __version__,
        "torch_version": torch.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
