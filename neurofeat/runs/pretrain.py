"""The ``pretrain`` run: an SSL encoder (+ Group-DRO) trained on a cohort -> ``models/<name>``.

:func:`pretrain_config` turns the command's options into a
:class:`~neurofeat.extract.pretrain.PretrainConfig`; :func:`pretrain_run` reads the
cohort (the store's patients or a manifest), trains through
:func:`neurofeat.extract.pretrain.pretrain` and, for a store cohort, logs the loss
history (``run_pretrain_history`` view) and, with ``curve_every``, the learning curve
scored by :class:`LearningCurveProbe` (``run_pretrain_curve``). Named recipes
(:mod:`neurofeat.extract.recipes`) fill the options not given. :func:`backbone_card` and
:func:`available_backbones` serve ``neurofeat backbones``. The CLI only parses, calls
these and prints.

Example
-------
>>> config = pretrain_config("dino", dro=True, arch="resnet10", input_size=32, spacing=4.0)  # doctest: +SKIP
>>> run = pretrain_run(config, store=Store.open("S"))                                       # doctest: +SKIP
>>> print(run.result.summary())                                                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurofeat.extract.checkpoint import (
    CARD_FILE,
    BackboneInfo,
    BackboneNotFoundError,
    default_models_dir,
    list_backbones,
    missing_card_keys,
    resolve_backbone,
)
from neurofeat.extract.distributed import process_rank
from neurofeat.extract.augment import AugmentConfig
from neurofeat.extract.encoders import EncoderConfig
from neurofeat.extract.preprocess import PreprocessConfig
from neurofeat.extract.loss_curve import plot_learning_curve
from neurofeat.extract.pretrain import (
    EpochEmbeddings,
    PretrainConfig,
    PretrainError,
    PretrainResult,
    pretrain,
)
from neurofeat.extract.pretrain_data import (
    PretrainCohort,
    cohort_from_manifest,
    cohort_from_store,
)
from neurofeat.extract.recipes import get_recipe
from neurofeat.runs.tables import shape
from neurofeat.store import RunInfo, Store, read_labels, read_table, write_run
from neurofeat.tasks import get_task

__all__ = [
    "PRETRAIN_ERRORS",
    "SAMPLING",
    "BackboneNotFoundError",
    "CURVE_FILES",
    "LearningCurveProbe",
    "OPTION_DEFAULTS",
    "PretrainPlan",
    "PretrainRun",
    "available_backbones",
    "backbone_card",
    "pretrain_config",
    "pretrain_run",
]

#: What pretraining raises for a user's mistake (the CLI prints these without a
#: traceback; ValueError, e.g. a bad option, as well).
PRETRAIN_ERRORS: tuple[type[BaseException], ...] = (PretrainError, RuntimeError)

#: ``--sampling`` -> ``PretrainConfig.group_balanced``.
SAMPLING: dict[str, bool | None] = {"auto": None, "balanced": True, "natural": False}

_CARD_PARAMS = ("name", "method", "dro", "eta", "C", "group_by", "arch", "widen_factor", "input_size", "epochs",
                "checkpoint_sha256", "preprocess_sha256", "manifest_sha256", "seed")


@dataclass(frozen=True, eq=False)
class PretrainPlan:
    """What is about to be trained, on what (handed to ``on_start`` before training)."""

    target: Path
    config: PretrainConfig
    cohort: PretrainCohort

    def summary(self) -> str:
        """One line: backbone, method, cohort size and source, groups with their sizes."""
        config = self.config
        groups = ", ".join(f"{g} ({n})" for g, n in self.cohort.groups_summary().items())
        return (f"pretraining {self.target.name}: {config.method}{' + Group-DRO' if config.dro else ''} on "
                f"{len(self.cohort)} patients from {self.cohort.source}; groups by {'+'.join(config.group_by)}: "
                f"{groups}")


@dataclass(frozen=True, eq=False)
class PretrainRun:
    """A finished pretraining (on rank 0).

    Attributes
    ----------
    result : PretrainResult
        The backbone written, its card and loss history.
    tables : dict name -> DataFrame
        The run's stored tables (``pretrain_history``, and ``pretrain_curve`` with a
        learning curve); empty for a manifest cohort.
    params : dict
        Card fields stored in ``run.json``.
    info : RunInfo or None
        Where the run was written (None for a manifest cohort: there is no store).
    """

    result: PretrainResult
    tables: dict[str, pd.DataFrame]
    params: dict[str, Any]
    info: RunInfo | None


#: The learning-curve figure's files in the backbone directory and the run folder.
CURVE_FILES = ("learning_curve.png", "learning_curve.svg")


@dataclass(frozen=True, eq=False)
class LearningCurveProbe:
    """Scores an encoder's in-memory embeddings during pretraining (the epoch hook).

    Two quick cross-validated linear probes per call (one stratified K-fold, no repeats,
    no interval: a trend to watch, not a test): the out-of-fold AUC of *task* and the
    balanced accuracy of a site classifier (chance 1/#sites; near chance = the encoder
    does not see the site).

    Build it with :meth:`from_store`, which reads the labels once and checks that the
    task can be probed with ``n_splits`` folds before any training starts.
    """

    task: str
    patient_ids: np.ndarray
    labels: np.ndarray
    site_of: dict[str, str]
    n_splits: int = 5
    seed: int = 0

    @classmethod
    def from_store(cls, store: Store, task: str = "idh1", *, n_splits: int = 5, seed: int = 0
                   ) -> "LearningCurveProbe":
        """Labels of *task* and every patient's site from *store*.

        Raises
        ------
        ValueError
            A survival task, or fewer than *n_splits* patients in a class.
        """
        task_def = get_task(task)
        if task_def.kind == "survival":
            raise ValueError(f"--curve-task {task_def.name} is a survival task; the learning curve needs a "
                             "binary or continuous task (e.g. idh1).")
        data = read_labels(store, task_def)
        y = data.y_binary.astype(bool)
        smallest = int(min(y.sum(), (~y).sum())) if y.size else 0
        if smallest < n_splits:
            raise ValueError(f"--curve-task {task_def.name}: {int(y.sum())} positive and {int((~y).sum())} negative "
                             f"labelled patients; a {n_splits}-fold probe needs at least {n_splits} of each. "
                             "Choose another task or add labels.")
        sites = read_table(store, "patients", ["patient_id", "site"]).to_pandas()
        site_of = dict(zip(sites["patient_id"].astype(str), sites["site"].astype(str)))
        return cls(task=task_def.name, patient_ids=data.patient_ids.astype(str), labels=y, site_of=site_of,
                   n_splits=int(n_splits), seed=int(seed))

    def __call__(self, snapshot: EpochEmbeddings) -> dict[str, float]:
        """``auc``, ``n_task``, ``site_ba``, ``site_chance``, ``n_site`` of one epoch's embeddings."""
        from neurofeat.analysis.folds import stratified_kfold_plan
        from neurofeat.analysis.invariance import site_probe
        from neurofeat.analysis.metrics import roc_auc
        from neurofeat.analysis.probes import LinearProbe
        from neurofeat.analysis.protocols import out_of_fold

        X = np.asarray(snapshot.embeddings, dtype=np.float64)
        ids = np.asarray(snapshot.patient_ids, dtype=str)
        row = pd.Index(ids).get_indexer(self.patient_ids)
        keep = row >= 0
        X_task, y = X[row[keep]], self.labels[keep]
        plan = stratified_kfold_plan(self.patient_ids[keep], y, n_splits=self.n_splits, n_repeats=1,
                                     task=f"curve-{self.task}", seed=self.seed)
        oof = out_of_fold(X_task, y, plan, lambda: LinearProbe(random_state=self.seed))
        values: dict[str, float] = {"auc": float(roc_auc(y, oof.scores[0])), "n_task": int(y.size)}
        sites = np.array([self.site_of.get(pid, "") for pid in ids])
        known = sites != ""
        if np.unique(sites[known]).size > 1:
            site = site_probe(X[known], sites[known], ids[known], n_splits=self.n_splits, seed=self.seed,
                              n_boot=200, plan_name="curve-site")
            values.update(site_ba=float(site.pooled_balanced_accuracy), site_chance=float(site.chance),
                          n_site=int(known.sum()))
        return values


def curve_table(result: PretrainResult, n_splits: int, task: str) -> pd.DataFrame:
    """The ``pretrain_curve`` table of a finished run (one row per epoch and metric)."""
    rows = []
    for entry in result.curve:
        rows.append({"epoch": entry["epoch"], "task": task, "metric": "auc", "estimate": entry["auc"],
                     "chance": 0.5, "n": entry["n_task"]})
        if "site_ba" in entry:
            rows.append({"epoch": entry["epoch"], "task": "site", "metric": "site_ba", "estimate": entry["site_ba"],
                         "chance": entry["site_chance"], "n": entry["n_site"]})
    frame = pd.DataFrame(rows, columns=["epoch", "task", "metric", "estimate", "chance", "n"])
    return shape(frame, "pretrain", "pretrain_curve", backbone=result.name, n_folds=n_splits,
                 seed=result.card["seed"], checkpoint_sha256=result.card["checkpoint_sha256"],
                 preprocess_sha256=result.card["preprocess_sha256"])


def _plot_curve(result: PretrainResult, task: str, n_splits: int) -> Path:
    stem = result.path / Path(CURVE_FILES[0]).stem
    chance = next((c["site_chance"] for c in result.curve if "site_chance" in c), None)
    panels = [("auc", f"{task} AUC (linear probe)", 0.5)]
    if chance is not None:
        panels.append(("site_ba", "site balanced accuracy", chance))
    plot_learning_curve(list(result.curve), stem, panels=panels,
                        title=f"{result.name}: learning curve (one {n_splits}-fold CV per probe and point; a trend)")
    return stem


#: What :func:`pretrain_config` uses for an option given neither explicitly nor by a recipe.
OPTION_DEFAULTS: dict[str, Any] = {
    "eta": 0.01, "adjustment": 0.0, "arch": "resnet50", "widen_factor": 1.0, "input_size": 128, "spacing": 1.0,
    "epochs": 100, "batch_size": 8, "lr": 1e-5, "weight_decay": 0.05, "schedule": "constant", "warmup_epochs": 0,
}


def pretrain_config(
    method: str, *, recipe: str | None = None, dro: bool = False, group_by: Sequence[str] = ("site",),
    eta: float | None = None, adjustment: float | None = None, sampling: str = "auto", arch: str | None = None,
    widen_factor: float | None = None, input_size: int | None = None, spacing: float | None = None,
    epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
    weight_decay: float | None = None, schedule: str | None = None, warmup_epochs: int | None = None,
    method_params: Mapping[str, Any] | None = None, augment: Mapping[str, Any] | None = None, seed: int = 0,
    device: str = "auto", precision: str = "auto", workers: int = 0,
    cache_dir: str | os.PathLike[str] | None = None, keep_state: bool = False,
) -> PretrainConfig:
    """A :class:`~neurofeat.extract.pretrain.PretrainConfig` from ``neurofeat pretrain``'s options.

    Isotropic *spacing* (mm) and a cubic *input_size*; *sampling* is one of
    :data:`SAMPLING`; the other options keep the config's names. An option left at
    ``None`` takes the *recipe*'s value (:mod:`neurofeat.extract.recipes`), else
    :data:`OPTION_DEFAULTS`; *method_params* and *augment* are merged over the recipe's
    key by key.

    Raises
    ------
    ValueError
        An unknown sampling, method, precision or schedule, or inconsistent sizes;
        :class:`~neurofeat.extract.recipes.RecipeError` for an unknown recipe.
    """
    if sampling not in SAMPLING:
        raise ValueError(f"--sampling must be auto, balanced or natural, got {sampling!r}")
    given = {"eta": eta, "adjustment": adjustment, "arch": arch, "widen_factor": widen_factor,
             "input_size": input_size, "spacing": spacing, "epochs": epochs, "batch_size": batch_size, "lr": lr,
             "weight_decay": weight_decay, "schedule": schedule, "warmup_epochs": warmup_epochs}
    base: dict[str, Any] = dict(OPTION_DEFAULTS)
    params: dict[str, Any] = {}
    augment_fields: dict[str, Any] = {}
    if recipe is not None:
        chosen = get_recipe(recipe, method).options()
        params.update(chosen.pop("method_params"))
        augment_fields.update(chosen.pop("augment"))
        base.update(chosen)
    values = {k: (v if v is not None else base[k]) for k, v in given.items()}
    params.update(method_params or {})
    augment_fields.update(augment or {})
    size, step = int(values["input_size"]), float(values["spacing"])
    encoder = EncoderConfig(arch=values["arch"], widen_factor=values["widen_factor"], input_size=size,
                            spacing=(step, step, step))
    return PretrainConfig(
        method=method, dro=dro, group_by=tuple(group_by), eta=values["eta"], adjustment=values["adjustment"],
        encoder=encoder, preprocess=PreprocessConfig(input_size=size, spacing=step),
        augment=AugmentConfig(**augment_fields), method_params=params, epochs=values["epochs"],
        batch_size=values["batch_size"], lr=values["lr"], weight_decay=values["weight_decay"],
        schedule=values["schedule"], warmup_epochs=values["warmup_epochs"], seed=seed, device=device,
        precision=precision, num_workers=workers, cache_dir=str(cache_dir) if cache_dir is not None else None,
        keep_state=keep_state, group_balanced=SAMPLING[sampling], recipe=recipe,
    )


def pretrain_run(
    config: PretrainConfig, *, store: Store | None = None, manifest: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None, models_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False, progress: bool = False, on_start: Callable[[PretrainPlan], None] | None = None,
    curve_every: int = 0, curve_task: str = "idh1", curve_folds: int = 5,
) -> PretrainRun | None:
    """Train on the store's patients (or a manifest), write the backbone, log the loss history.

    Parameters
    ----------
    config : PretrainConfig
    store : Store, optional
        The cohort's source, and where the run is logged (unless *manifest*).
    manifest : path, optional
        A ``manifest.csv`` to train on instead of the store (nothing is logged).
    out : path, optional
        Backbone directory; default ``<models_dir>/<method>[_dro]``.
    models_dir : path, optional
        Default ``$NEUROFEAT_MODELS`` or ``./models``.
    overwrite, progress
        As for :func:`neurofeat.extract.pretrain.pretrain`.
    on_start : callable, optional
        Called on rank 0 with the :class:`PretrainPlan` before training starts.
    curve_every : int
        Learning curve: score the encoder (:class:`LearningCurveProbe`) before training,
        every *curve_every* epochs and after the last; 0 = off. Needs a store (labels).
        Written as the ``pretrain_curve`` table and ``learning_curve.png``/``.svg`` (in the
        backbone directory and the run folder). Costs one embedding pass over the cohort
        and two small CV probes per point.
    curve_task, curve_folds
        The task whose AUC is tracked and the probes' folds.

    Returns
    -------
    PretrainRun or None
        None on torchrun ranks other than 0.

    Raises
    ------
    PretrainError, ValueError
        See :func:`neurofeat.extract.pretrain.pretrain` and the cohort readers.
    """
    if int(curve_every) < 0:
        raise ValueError(f"--curve-every must be >= 0 (0 = no learning curve), got {curve_every}")
    if manifest is not None:
        if curve_every:
            raise ValueError("--curve-every needs the store's labels; train with --store, or drop --curve-every.")
        cohort, store = cohort_from_manifest(manifest, config.group_by), None
    elif store is not None:
        cohort = cohort_from_store(store, config.group_by)
    else:
        raise ValueError("pretrain_run needs a store or a manifest")
    probe = (LearningCurveProbe.from_store(store, curve_task, n_splits=curve_folds, seed=config.seed)
             if curve_every and store is not None else None)
    target = Path(out) if out is not None else Path(models_dir or default_models_dir()) / config.name
    if on_start is not None and process_rank() == 0:  # torchrun: the process group starts inside pretrain
        on_start(PretrainPlan(target=target, config=config, cohort=cohort))
    result = pretrain(config, cohort, target, overwrite=overwrite, progress=progress, epoch_hook=probe,
                      hook_every=max(1, int(curve_every)))
    if result is None:  # not rank 0
        return None
    params = {k: result.card[k] for k in _CARD_PARAMS}
    params.update(recipe=config.recipe, curve_every=int(curve_every),
                  curve_task=probe.task if probe is not None else None)
    if store is None:
        return PretrainRun(result=result, tables={}, params=params, info=None)
    frame = result.to_frame()
    frame.insert(0, "backbone", result.name)
    for column in ("checkpoint_sha256", "preprocess_sha256", "seed"):
        frame[column] = result.card[column]
    tables = {"pretrain_history": frame}
    files: dict[str, Callable[[Path], None]] = {}
    for name in ("loss_curve.png", "loss_curve.svg"):
        if (result.path / name).exists():
            files[name] = _copier(result.path / name)
    if probe is not None and result.curve:
        tables["pretrain_curve"] = curve_table(result, curve_folds, probe.task)
        _plot_curve(result, probe.task, curve_folds)
        files.update({name: _copier(result.path / name) for name in CURVE_FILES})
    info = write_run(store, "pretrain", tables, params=params, files=files)
    return PretrainRun(result=result, tables=tables, params=params, info=info)


def _copier(source: Path) -> Callable[[Path], None]:
    return lambda target: shutil.copyfile(source, target)


def backbone_card(
    name: str, models_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, dict[str, Any], list[str]]:
    """(directory, card, card keys a `neurofeat pretrain` card would have but this one lacks).

    Raises
    ------
    BackboneNotFoundError
        Naming the directory searched and the closest available name.
    """
    path = resolve_backbone(name, models_dir or default_models_dir())
    card = json.loads((path / CARD_FILE).read_text())
    return path, card, missing_card_keys(card)


def available_backbones(models_dir: str | os.PathLike[str] | None = None) -> tuple[Path, list[BackboneInfo]]:
    """(the models directory searched, its backbones sorted by name)."""
    root = Path(models_dir or default_models_dir())
    return root, list_backbones(root)
