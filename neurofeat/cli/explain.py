"""CLI: ``neurofeat explain`` — Grad-CAM / occlusion maps of one patient."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import StoreOption, console, fail, open_store, print_frame, user_errors

__all__ = ["register", "explain"]


def explain(
    backbone: Annotated[str, typer.Option(help="Backbone whose encoder is explained.")],
    task: Annotated[str, typer.Option(help="Task whose probe is explained, e.g. idh1.")],
    patient: Annotated[str, typer.Option(help="Patient id, e.g. GBM-042.")],
    method: Annotated[list[str] | None, typer.Option(
        help="gradcam (default) or occlusion (the quantitative check; slower); repeat for "
             "both.")] = None,
    target: Annotated[str, typer.Option(
        help="Class whose evidence is mapped: predicted, positive or negative.")] = "predicted",
    layer: Annotated[str | None, typer.Option(
        help="Grad-CAM layer, e.g. layer4 (default: the deepest stage whose feature map is at "
             "least 4 voxels a side).")] = None,
    models_dir: Annotated[Path | None, typer.Option(
        help="Where neurofeat pretrain backbones live (default $NEUROFEAT_MODELS or "
             "./models).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        help="External checkpoint the backbone was extracted with (with --adapter).")] = None,
    adapter: Annotated[str | None, typer.Option(
        help="Adapter of --checkpoint (brainiac, medicalnet, monai-resnet, swinunetr).")] = None,
    mask: Annotated[Path | None, typer.Option(
        help="Tumour mask NIfTI on the patient's scan grid (default: <patient>_seg.nii.gz "
             "next to the scans, when present).")] = None,
    occlusion_mask: Annotated[int | None, typer.Option(
        help="Occluded box side in voxels (default: a quarter of the input side).",
        min=1)] = None,
    occlusion_overlap: Annotated[float, typer.Option(
        help="Overlap of occluded boxes in [0, 1).", min=0.0, max=0.95)] = 0.0,
    random_maps: Annotated[int, typer.Option(
        help="Random smooth maps of the baseline.", min=10)] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the probe and random maps.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Where does the encoder look? Grad-CAM (MONAI) through the encoder and the fitted
    linear probe turned into a torch head, and occlusion sensitivity as the quantitative
    check; a NIfTI heatmap on the patient's scan grid and a PNG/SVG montage (axial,
    coronal, sagittal over T1ce and FLAIR); with a tumour mask, the share of attribution
    inside it against random maps. Imported backbones have no image encoder to explain.

    Example: neurofeat explain --backbone dino_dro --task idh1 --patient GBM-042 --store S
    """
    from neurofeat.runs import EXPLAIN_METHODS, explain_errors, explain_run, json_records

    methods = method or ["gradcam"]
    bad = [m for m in methods if m not in EXPLAIN_METHODS]
    if bad:
        fail(f"--method must be one of {', '.join(EXPLAIN_METHODS)}, got {bad[0]!r}")
    opened = open_store(store)
    with user_errors(*explain_errors()):
        if not as_json:
            console().print(f"explaining {patient} ({', '.join(methods)}) ...")
        run = explain_run(opened, backbone, task, patient, methods=methods, target=target,
                          layer=layer, models_dir=models_dir, checkpoint=checkpoint,
                          adapter=adapter, mask=mask, occlusion_mask_size=occlusion_mask,
                          occlusion_overlap=occlusion_overlap, n_random=random_maps, seed=seed,
                          device=device)
    if as_json:
        typer.echo(json.dumps({"run_id": run.info.run_id, "params": run.params,
                               "attribution": json_records(run.tables["attribution"])},
                              indent=2, default=str))
        return
    table = run.tables["attribution"][["method", "layer", "target_class", "probability",
                                       "fraction_inside", "baseline_mean", "enrichment",
                                       "p_value", "seconds"]]
    print_frame(table, title=f"{backbone} / {run.params['task']} / {patient}: attribution "
                             f"(mask: {run.params['mask_source']})")
    for result in run.results.values():
        console().print(result.summary())
    for name, path in run.heatmaps.items():
        console().print(f"{name} heatmap (NIfTI, the patient's scan grid): {path}")
    console().print(f"wrote run [bold]{run.info.run_id}[/bold] to {run.info.path}")


def register(app: typer.Typer) -> None:
    """Add ``neurofeat explain`` to *app*."""
    app.command("explain")(explain)
