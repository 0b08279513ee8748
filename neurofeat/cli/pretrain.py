"""CLI: ``neurofeat pretrain`` (SSL encoder [+ Group-DRO] -> models/<name>) and
``neurofeat backbones`` (what is available, with their cards)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from neurofeat.cli.common import (
    StoreOption,
    console,
    fail,
    open_store,
    print_frame,
    user_errors,
)

__all__ = ["backbones", "pretrain", "register"]

_METHODS = ("simclr", "moco", "byol", "dino", "mae")

ModelsDirOption = Annotated[
    Path | None,
    typer.Option(help="Where backbones live (default: $NEUROFEAT_MODELS or ./models).", show_default=False),
]


def _parse_params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--param {item!r}: write KEY=VALUE, e.g. --param queue_size=1024")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value.strip()
    return params


def _group_columns(items: list[str] | None) -> tuple[str, ...]:
    columns: list[str] = []
    for item in items or []:
        columns.extend(c.strip() for c in item.split(",") if c.strip())
    return tuple(dict.fromkeys(columns))


def pretrain(
    method: Annotated[str, typer.Option(help=f"SSL method: {', '.join(_METHODS)}.", show_default=False)],
    dro: Annotated[bool, typer.Option("--dro/--no-dro", help="Group-DRO over --group-by groups (backbone "
                                                            "<method>_dro).")] = False,
    group_by: Annotated[
        list[str] | None,
        typer.Option(help="Group column(s) of the clinical view / manifest (site, cohort, histology, ...); "
                          "repeat or comma-separate. Default: site.", show_default=False),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(help="Named settings measured to learn in a budget (cpu-demo: tiny encoder, 32^3, CPU); "
                          "options given explicitly override it.", show_default=False),
    ] = None,
    eta: Annotated[float | None, typer.Option(min=0.0, help="Group-DRO step size of the group weights q "
                                                            "[default: 0.01, or the recipe's]", show_default=False)] = None,
    adjustment: Annotated[
        float, typer.Option("--adjustment", "-C", min=0.0, help="Group-DRO generalisation adjustment C "
                                                                  "(adds C/sqrt(n_g) to group g's loss).")
    ] = 0.0,
    sampling: Annotated[
        str, typer.Option(help="Batch sampling: auto (group-balanced with --dro, as Sagawa et al.; shuffled "
                               "without), balanced, or natural.")
    ] = "auto",
    store: StoreOption = None,
    manifest: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Train on a manifest.csv (patient_id, site, t1, t1ce, t2, "
                                                       "flair) instead of the store.", show_default=False),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Backbone directory (default: <models-dir>/<method>[_dro]).", show_default=False),
    ] = None,
    models_dir: ModelsDirOption = None,
    arch: Annotated[str | None, typer.Option(help="resnet10, resnet18, resnet34 or resnet50 "
                                                  "[default: resnet50, or the recipe's]", show_default=False)] = None,
    widen_factor: Annotated[float | None, typer.Option(min=0.01, help="Width multiplier of the ResNet "
                                                       "[default: 1.0, or the recipe's]", show_default=False)] = None,
    input_size: Annotated[int | None, typer.Option(min=8, help="Cubic input edge in voxels "
                                                   "[default: 128, or the recipe's]", show_default=False)] = None,
    spacing: Annotated[float | None, typer.Option(min=0.01, help="Isotropic voxel spacing in mm "
                                                  "[default: 1.0, or the recipe's]", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs (NeuroRAD-FM: 100) "
                                               "[default: 100, or the recipe's]", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="Volumes per step and rank "
                                                   "[default: 8, or the recipe's]", show_default=False)] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="AdamW learning rate (NeuroRAD-FM: 1e-5) "
                                             "[default: 1e-5, or the recipe's]", show_default=False)] = None,
    weight_decay: Annotated[float | None, typer.Option(min=0.0, help="AdamW weight decay "
                                                       "[default: 0.05, or the recipe's]", show_default=False)] = None,
    schedule: Annotated[str | None, typer.Option(help="Learning-rate schedule: constant or cosine "
                                                 "[default: constant, or the recipe's]", show_default=False)] = None,
    warmup_epochs: Annotated[int | None, typer.Option(min=0, help="Linear warm-up epochs "
                                                      "[default: 0, or the recipe's]", show_default=False)] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Method hyper-parameter KEY=VALUE (e.g. temperature=0.2, queue_size=1024, n_local=6, "
                          "mask_ratio=0.75); repeatable.", show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, data order, augmentations and masks.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (torchrun: cuda:LOCAL_RANK).")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16.")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    cache_dir: Annotated[
        Path | None,
        typer.Option(envvar="NEUROFEAT_CACHE", help="On-disk cache of preprocessed volumes, shared with "
                                                    "`neurofeat extract` (store cohorts).", show_default=False),
    ] = None,
    keep_state: Annotated[bool, typer.Option("--keep-state", help="Keep the resumable state after the last "
                                                                  "epoch (to train more epochs later).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing backbone or an unfinished "
                                                                "run of another configuration.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")] = True,
    curve_every: Annotated[
        int, typer.Option(min=0, help="Learning curve: every K epochs (and before the first, after the last) embed "
                                      "the cohort in memory and probe --curve-task AUC and site balanced accuracy "
                                      "(store cohorts; 0 = off). Written as run table pretrain_curve and "
                                      "learning_curve.png.")
    ] = 0,
    curve_task: Annotated[str, typer.Option(help="Task whose AUC the learning curve tracks.")] = "idh1",
    curve_folds: Annotated[int, typer.Option(min=2, help="Folds of the learning curve's probes.")] = 5,
) -> None:
    """Pretrain a 3D encoder with SimCLR, MoCo, BYOL, DINO or MAE, optionally with Group-DRO.

    Trains on the patients registered in the store (or a manifest) and writes
    <models-dir>/<method>[_dro]/ with model.safetensors, card.json and loss_curve.png
    (and, with --curve-every, learning_curve.png and the run table pretrain_curve).
    An interrupted run resumes from its last finished epoch when started again.
    Under `torchrun --nproc-per-node N -m neurofeat pretrain ...` it trains with DDP.

    Example: neurofeat pretrain --method simclr --recipe cpu-demo --store S --cache-dir cache
    (or spelled out: --method dino --dro --group-by site --store S --arch resnet10
    --widen-factor 0.25 --input-size 32 --spacing 4 --epochs 5 --batch-size 4 --lr 1e-3)
    """
    method = method.lower()
    if method not in _METHODS:
        fail(f"--method {method!r} is not one of {', '.join(_METHODS)}")
    with user_errors():
        from neurofeat.runs.pretrain import (
            PRETRAIN_ERRORS,
            pretrain_config,
            pretrain_run,
        )
    with user_errors(*PRETRAIN_ERRORS):
        config = pretrain_config(
            method, recipe=recipe, dro=dro, group_by=_group_columns(group_by) or ("site",), eta=eta, adjustment=adjustment,
            sampling=sampling, arch=arch, widen_factor=widen_factor, input_size=input_size, spacing=spacing,
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, schedule=schedule,
            warmup_epochs=warmup_epochs, method_params=_parse_params(param), seed=seed, device=device,
            precision=precision, workers=workers, cache_dir=cache_dir, keep_state=keep_state,
        )
        run = pretrain_run(config, store=open_store(store) if manifest is None else None, manifest=manifest,
                           out=out, models_dir=models_dir, overwrite=overwrite, progress=progress,
                           on_start=lambda plan: console().print(plan.summary(), markup=False, highlight=False),
                           curve_every=curve_every, curve_task=curve_task, curve_folds=curve_folds)
    if run is None:  # not rank 0
        return
    _print_result(run.result)
    if "pretrain_curve" in run.tables:
        curve = run.tables["pretrain_curve"]
        print_frame(curve[["epoch", "task", "metric", "estimate", "chance", "n"]].round(3),
                    title=f"{run.result.name}: learning curve (one {int(curve['n_folds'].iloc[0])}-fold probe per "
                          "point; a trend, not a test)")
    if run.info is not None:
        views = "run_pretrain_history" + (", run_pretrain_curve" if "pretrain_curve" in run.tables else "")
        console().print(f"loss history stored as run {run.info.run_id} (views {views})")


def _print_result(result: Any) -> None:
    import pandas as pd

    card = result.card
    last = result.history[-1]
    rows = [{"group": g, "n_patients": info["n"], "final_loss": last["group_loss"].get(g), "q": info["q"]}
            for g, info in card["groups"].items()]
    print_frame(pd.DataFrame(rows), title=f"{result.name}: epoch {last['epoch']} loss {last['loss']:.4f}")
    console().print(result.summary())


_REFERENCE_BACKBONES = (
    "reference backbones, always available to `neurofeat extract`: random (a randomly "
    "initialised encoder of --arch and --seed: the floor) and radiomics (pyradiomics "
    "features in the tumour segmentation or the brain mask: the classical baseline)")


def backbones(
    name: Annotated[str | None, typer.Argument(help="Show this backbone's full card.", show_default=False)] = None,
    models_dir: ModelsDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the backbones available to `neurofeat extract`, with their cards.

    Example: neurofeat backbones --models-dir models   (or: neurofeat backbones dino_dro)
    """
    import pandas as pd

    from neurofeat.runs.pretrain import (
        BackboneNotFoundError,
        available_backbones,
        backbone_card,
    )

    if name is not None:
        try:
            path, card, missing = backbone_card(name, models_dir)
        except BackboneNotFoundError as error:
            fail(str(error))
        if as_json:
            typer.echo(json.dumps(card, indent=2))
            return
        short = {k: v for k, v in card.items() if k not in ("loss_history", "augment", "preprocessing")}
        frame = pd.DataFrame({"field": list(short), "value": [json.dumps(v) if isinstance(v, (dict, list)) else v
                                                              for v in short.values()]})
        print_frame(frame, title=f"backbone {name} ({path})")
        if missing:
            console().print(f"[yellow]card lacks {missing} (not written by `neurofeat pretrain`?)[/]")
        return
    root, infos = available_backbones(models_dir)
    if as_json:
        typer.echo(json.dumps([info.to_dict() | {"card": info.card} for info in infos], indent=2, default=str))
        return
    if not infos:
        console().print(f"no backbones in {root}; train one with `neurofeat pretrain --method dino --dro`.")
        console().print(_REFERENCE_BACKBONES)
        return
    rows = []
    for info in infos:
        row = info.to_dict()
        groups = info.card.get("groups") or {}
        row["groups: n, q"] = " ".join(f"{g}:{v.get('n')},{v.get('q', float('nan')):.2f}"
                                       for g, v in groups.items())
        row["encoder"] = f"{row['arch']}x{row['widen_factor']:g}@{row['input_size']}" if row["arch"] else ""
        row["dim"] = row["embedding_dim"]
        row["n"] = info.card.get("n_patients")
        row["sha256"] = str(row["checkpoint_sha256"] or "")[:12]
        rows.append(row)
    frame = pd.DataFrame(rows)[["name", "method", "dro", "encoder", "dim", "epochs", "n", "groups: n, q",
                                "sha256"]]
    print_frame(frame, title=f"backbones in {root}")
    console().print(_REFERENCE_BACKBONES)


def register(app: typer.Typer) -> None:
    """Add ``pretrain`` and ``backbones`` to *app*."""
    app.command("pretrain")(pretrain)
    app.command("backbones")(backbones)
