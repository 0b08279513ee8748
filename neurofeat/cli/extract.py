"""CLI: ``neurofeat extract`` (one embedding per patient per backbone into the store)."""

from __future__ import annotations

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

__all__ = ["register", "extract"]


def _parse_options(items: list[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--adapter-option {item!r}: write KEY=VALUE, e.g. --adapter-option conv1_stride=2")
        value = value.strip()
        try:
            options[key.strip()] = int(value)
        except ValueError:
            options[key.strip()] = value
    return options


def extract(
    backbone: Annotated[
        str | None,
        typer.Option(help="Backbone name: a `neurofeat pretrain` output in --models-dir, or (with --checkpoint) "
                          "the name to store an external checkpoint's embeddings under, or a reference backbone: "
                          "'random' (random-init encoder: --arch, --widen-factor, --input-size, --seed) or "
                          "'radiomics' (IBSI radiomic features: --radiomics-params).", show_default=False),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Store the rows under this backbone name instead (e.g. --backbone random "
                                    "--seed 1 --name random-s1).", show_default=False),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(help="--backbone random: resnet10, resnet18, resnet34 or resnet50 (default resnet50).",
                     show_default=False),
    ] = None,
    widen_factor: Annotated[
        float | None,
        typer.Option(help="--backbone random: width multiplier (default 1.0; 0.25 for CPU-sized encoders).",
                     show_default=False),
    ] = None,
    radiomics_params: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="--backbone radiomics: pyradiomics parameters file (YAML or "
                                                       "JSON; default neurofeat/data/radiomics.yaml). Hashed into "
                                                       "every row's preprocess_sha256.", show_default=False),
    ] = None,
    store: StoreOption = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(help="Where backbones live (default: $NEUROFEAT_MODELS or ./models).", show_default=False),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="External weights file (.safetensors, or .pt/.pth/.ckpt "
                                                       "loaded with weights_only=True).", show_default=False),
    ] = None,
    adapter: Annotated[
        str | None,
        typer.Option(help="Layout of --checkpoint: brainiac, medicalnet, monai-resnet or swinunetr.",
                     show_default=False),
    ] = None,
    adapter_option: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE the weights cannot tell (monai-resnet: conv1_stride, no_max_pool; "
                          "swinunetr: downsample). Repeatable.", show_default=False),
    ] = None,
    input_size: Annotated[
        int | None, typer.Option(help="External checkpoints and --backbone random: input side in voxels (default "
                                      "128).", show_default=False)
    ] = None,
    spacing: Annotated[
        float | None, typer.Option(help="External checkpoints and --backbone random: voxel spacing in mm (default "
                                        "1.0).", show_default=False)
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (torchrun: cuda:LOCAL_RANK).")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Volumes per forward pass.")] = 4,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Worker processes decoding/preprocessing while the model runs; 0 = one background "
                                 "thread. Default: 0 on CPU, one per spare core (max 8) on GPU. --backbone "
                                 "radiomics: processes computing features (default 0: in this process).",
                     show_default=False),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="CPU threads for the encoder (default: every core). Fewer leave cores to "
                                 "decoding; embeddings are reproducible for a given count.", show_default=False),
    ] = None,
    perturb: Annotated[
        str | None,
        typer.Option(help="Perturbations, each extracted into its own partition: e.g. "
                          "gibbs:0.2,bias:0.3,contrast:1.5 ('none' = baseline; a+b combines).", show_default=False),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(envvar="NEUROFEAT_CACHE", help="Cache preprocessed volumes here (keyed by scan sha256 + "
                                                    "preprocessing hash) so another backbone skips decoding.",
                     show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed (stored with every row; --backbone random: the initialisation).")] = 0,
    replace: Annotated[bool, typer.Option("--replace", help="Swap the backbone if it holds another checkpoint, preprocessing or architecture.")] = False,
    allow_failures: Annotated[
        bool, typer.Option("--allow-failures", help="Exit 0 even if some patients failed (they are recorded).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check checkpoint, scans, shapes and disk space; write nothing.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Embed every registered patient with a backbone and store the embeddings.

    Rows go to embeddings/backbone=NAME/perturbation=P/ with the checkpoint and
    preprocessing hashes. Interrupted runs resume; failed patients are recorded in the
    extract_failures view (still open ones: open_extract_failures; exit status 1 unless
    --allow-failures). Multi-GPU:
    torchrun --nproc-per-node 4 -m neurofeat extract --backbone dino_dro --store S

    Reference backbones: --backbone random (the floor: does pretraining help?) and
    --backbone radiomics (tumour segmentation when registered, brain mask otherwise;
    which one per patient: the run_radiomics view).

    Example: neurofeat extract --backbone dino_dro --store S --perturb gibbs:0.2,bias:0.3
    """
    from neurofeat.runs.extract import (
        EXTRACT_ERRORS,
        BackboneSource,
        extract_dry_run,
        extract_run,
    )

    opened = open_store(store)
    source = BackboneSource(backbone, models_dir=models_dir, checkpoint=checkpoint, adapter=adapter,
                            adapter_options=_parse_options(adapter_option), input_size=input_size, spacing=spacing,
                            arch=arch, widen_factor=widen_factor, radiomics_params=radiomics_params, store_as=name)
    with user_errors(*EXTRACT_ERRORS):
        if dry_run:
            report = extract_dry_run(opened, source, perturb=perturb, device=device, replace=replace,
                                     cache_dir=cache_dir, seed=seed)
        else:
            run = extract_run(opened, source, perturb=perturb, device=device, batch_size=batch_size,
                              workers=workers, threads=threads, cache_dir=cache_dir, seed=seed, replace=replace,
                              progress=progress)
    if dry_run:
        _print_dry_run(report)
    elif run is not None:  # None on torchrun ranks other than 0
        _print_extraction(run)
        _report_failures(run.result.failures, allow_failures)


def _print_dry_run(report: Any) -> None:
    if report.problems:
        print_frame(report.to_frame().head(50), title="problems")
    console().print(report.summary(), markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def _print_extraction(run: Any) -> None:
    result = run.result
    compact = run.tables["extraction"].drop(columns=["backbone"]).rename(columns={
        "n_patients": "patients", "n_already_done": "stored before", "n_written": "written", "n_failed": "failed",
        "n_zero_filled": "zero-filled", "n_cached": "cached", "seconds": "s", "patients_per_s": "patients/s"})
    print_frame(compact, title=f"extract {result.backbone} on {result.device} (run {result.run_id})")
    regions = run.tables.get("radiomics")
    if regions is not None and len(regions):
        counts = regions["mask"].value_counts()
        console().print(
            f"radiomics: {int(regions['n_features'].iloc[0])} features per patient; region: "
            f"{int(counts.get('tumour', 0))} tumour segmentation(s), {int(counts.get('brain', 0))} brain mask(s) "
            f"(per patient: the run_radiomics view); parameters {run.params['radiomics']['params_file']} "
            f"(preprocess_sha256 {result.preprocess_sha256[:12]})", markup=False, highlight=False)
    if run.log_error is not None:
        typer.secho(f"warning: the run summary could not be written ({run.log_error})", fg=typer.colors.YELLOW,
                    err=True)


def _report_failures(failures: Any, allow_failures: bool) -> None:
    if not failures:
        return
    for pert, pid, reason in failures[:10]:
        typer.secho(f"failed {pid} [{pert}]: {reason}", fg=typer.colors.RED, err=True)
    more = " (showing 10; all in the open_extract_failures view)" if len(failures) > 10 else ""
    if not allow_failures:
        fail(
            f"{len(failures)} patient(s) failed{more}; the others were stored. Fix the scans and rerun "
            "(done patients are skipped), or pass --allow-failures to accept."
        )
    typer.secho(f"{len(failures)} patient(s) failed{more}; accepted (--allow-failures)",
                fg=typer.colors.YELLOW, err=True)


def register(app: typer.Typer) -> None:
    """Add ``extract`` to *app*."""
    app.command("extract")(extract)
