"""CLI: ``neurofeat extract`` (one embedding per patient per backbone into the store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neurofeat.cli.common import StoreOption, console, fail, open_store, print_frame, user_errors

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
                          "the name to store an external checkpoint's embeddings under.", show_default=False),
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
        int | None, typer.Option(help="External checkpoints: input side in voxels (default 128).", show_default=False)
    ] = None,
    spacing: Annotated[
        float | None, typer.Option(help="External checkpoints: voxel spacing in mm (default 1.0).", show_default=False)
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (torchrun: cuda:LOCAL_RANK).")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Volumes per forward pass.")] = 4,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Worker processes decoding/preprocessing while the model runs; 0 = one background "
                                 "thread. Default: 0 on CPU, one per spare core (max 8) on GPU.", show_default=False),
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
    seed: Annotated[int, typer.Option(help="Seed (stored with every row).")] = 0,
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

    Example: neurofeat extract --backbone dino_dro --store S --perturb gibbs:0.2,bias:0.3
    """
    from neurofeat.extract.adapters import AdapterError
    from neurofeat.extract.checkpoint import BackboneNotFoundError, CheckpointError
    from neurofeat.extract.extractor import (
        ExtractionError,
        dry_run as run_dry_run,
        extract_embeddings,
        default_workers,
        resolve_device,
        resolve_extraction_backbone,
    )
    from neurofeat.extract.perturb import parse_perturbations
    from neurofeat.extract.preprocess import PreprocessConfig
    from neurofeat.store import CheckpointMismatchError, StoreLockedError

    errors = (AdapterError, CheckpointError, BackboneNotFoundError, ExtractionError, CheckpointMismatchError,
              StoreLockedError, OSError)
    opened = open_store(store)
    if checkpoint is None and (input_size is not None or spacing is not None):
        fail("--input-size/--spacing only apply to --checkpoint; a neurofeat backbone's card sets them")
    with user_errors(*errors):
        perturbations = parse_perturbations(perturb)
        dev = resolve_device(device)
        workers = default_workers(dev) if workers is None else workers
        pre = None
        if checkpoint is not None:
            pre = PreprocessConfig(
                input_size=input_size if input_size is not None else 128,
                spacing=spacing if spacing is not None else 1.0,
            )
        resolved = resolve_extraction_backbone(
            backbone, models_dir=models_dir, checkpoint=checkpoint, adapter=adapter,
            adapter_options=_parse_options(adapter_option), preprocess=pre, device="cpu" if dry_run else dev,
        )
        if dry_run:
            report = run_dry_run(opened, resolved, perturbations=perturbations, replace=replace, cache_dir=cache_dir)
            if report.problems:
                print_frame(report.to_frame().head(50), title="problems")
            console().print(report.summary(), markup=False, highlight=False)
            if not report.ok:
                raise typer.Exit(1)
            return
        result = extract_embeddings(
            opened, resolved, perturbations=perturbations, device=dev, batch_size=batch_size, workers=workers,
            cache_dir=cache_dir, replace=replace, seed=seed, progress=progress, threads=threads,
        )
    from neurofeat.extract.extractor import process_rank

    if process_rank() != 0:
        return
    frame = result.to_frame()
    compact = frame.drop(columns=["backbone"]).rename(columns={
        "n_patients": "patients", "n_already_done": "stored before", "n_written": "written", "n_failed": "failed",
        "n_zero_filled": "zero-filled", "n_cached": "cached", "seconds": "s", "patients_per_s": "patients/s"})
    print_frame(compact, title=f"extract {result.backbone} on {result.device} (run {result.run_id})")
    try:
        from neurofeat.store import write_run

        write_run(
            opened, "extract", {"extraction": frame},
            params={"backbone": result.backbone, "checkpoint_sha256": result.checkpoint_sha256,
                    "preprocess_sha256": result.preprocess_sha256, "preprocessing": resolved.preprocess.to_dict(),
                    "source": resolved.source, "device": result.device, "batch_size": batch_size,
                    "workers": workers, "threads": result.threads, "seed": seed, "perturbations": [p.label for p in perturbations],
                    "embedding_run_id": result.run_id},
        )
    except Exception as exc:  # noqa: BLE001 - the embeddings are committed; the log is secondary
        typer.secho(f"warning: the run summary could not be written ({exc})", fg=typer.colors.YELLOW, err=True)
    if result.failures:
        for pert, pid, reason in result.failures[:10]:
            typer.secho(f"failed {pid} [{pert}]: {reason}", fg=typer.colors.RED, err=True)
        more = f" (showing 10; all in the open_extract_failures view)" if len(result.failures) > 10 else ""
        if not allow_failures:
            fail(
                f"{len(result.failures)} patient(s) failed{more}; the others were stored. Fix the scans and rerun "
                "(done patients are skipped), or pass --allow-failures to accept."
            )
        typer.secho(f"{len(result.failures)} patient(s) failed{more}; accepted (--allow-failures)",
                    fg=typer.colors.YELLOW, err=True)


def register(app: typer.Typer) -> None:
    """Add ``extract`` to *app*."""
    app.command("extract")(extract)
