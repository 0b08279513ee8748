"""CLI: ``neurofeat synth`` writes the synthetic multi-site glioma cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "synth"]


def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (created).")],
    n: Annotated[int, typer.Option("--n", help="Number of patients.")] = 240,
    sites: Annotated[int, typer.Option("--sites", help="Number of sites (siteA, siteB, ...; 50/30/20 % for 3).")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same bytes.")] = 0,
    size: Annotated[int, typer.Option("--size", help="Voxels per axis of every image.")] = 64,
    spacing: Annotated[float, typer.Option("--spacing", help="Voxel size in mm.")] = 2.0,
    site_effect: Annotated[
        float, typer.Option("--site-effect", help="Strength of acquisition differences between sites (0 = none).")
    ] = 1.0,
    shortcut: Annotated[float, typer.Option(
        "--shortcut", help="Strength in [0, 1) of a planted site shortcut: at the training sites the "
        "markers of --shortcut-markers choose the scanner (P(scanner B) = 1/2 ± s/2), at the held-out "
        "site the association is reversed; 0 = none.")] = 0.0,
    shortcut_markers: Annotated[str, typer.Option(
        "--shortcut-markers", help="Comma-separated markers tied to the scanner.")] = "mgmt",
    shortcut_site: Annotated[str | None, typer.Option(
        "--shortcut-site", help="Held-out site of the shortcut (default: the last site).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Worker processes (0 = one per CPU, at most 4).")] = 0,
    no_seg: Annotated[bool, typer.Option("--no-seg", help="Do not write the <patient>_seg.nii.gz label maps.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a cohort already in --out.")] = False,
) -> None:
    """Write a synthetic multi-site glioma cohort with known truth (BraTS-style folder).

    Writes images/<patient>/<patient>_{t1,t1ce,t2,flair,seg}.nii.gz, manifest.csv,
    clinical.csv (canonical columns; unknown = empty), truth.parquet (every latent
    variable), sites.csv, oracle_traits.csv (the true latent imaging traits, to import as
    an "oracle" backbone: a ceiling, cheating by construction) and synth.json (with
    --shortcut, the card of which effects are causal and which spurious).

    Example: neurofeat synth --out cohort --n 240 --sites 3 --seed 0 --site-effect 1.0
    """
    from rich.console import Console
    from rich.table import Table

    from neurofeat.progress import progress_bar
    from neurofeat.synth import generate_cohort
    from neurofeat.synth.shortcut import Shortcut

    console = Console()
    try:
        planted = Shortcut(shortcut, tuple(m.strip() for m in shortcut_markers.split(",") if m.strip()),
                           held_out_site=shortcut_site)
        with progress_bar(transient=True) as bar:
            task = bar.add_task("synth: rendering patients", total=n)
            cohort = generate_cohort(
                out,
                n=n,
                n_sites=sites,
                seed=seed,
                size=size,
                spacing=spacing,
                site_effect=site_effect,
                shortcut=planted,
                write_segmentation=not no_seg,
                overwrite=overwrite,
                n_jobs=jobs,
                progress=lambda done, total: bar.update(task, completed=done),
            )
    except (ValueError, FileExistsError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None

    frame = cohort.to_frame()
    table = Table(title=f"synthetic cohort: {cohort.root} (seed {seed}, site effect {site_effect})")
    for column in frame.columns:
        table.add_column(column, justify="left" if column == "site" else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    console.print(table)
    console.print(f"manifest: {cohort.manifest_path}\nclinical: {cohort.clinical_path}\ntruth:    {cohort.truth_path}")
    console.print(f"oracle:   {cohort.root / 'oracle_traits.csv'} (true latent traits: a ceiling, cheating by "
                  "construction; neurofeat store import --backbone oracle --table ...)")
    card = cohort.params.get("shortcut")
    if card:
        expected = Table(title=f"planted shortcut (strength {shortcut}): AUC of an encoder that uses only ...")
        for column in ("marker", "site", "role", "n", "n_pos", "spurious (scanner)", "causal (traits)"):
            expected.add_column(column)
        for row in card["expected_auc"]:
            expected.add_row(row["marker"], row["site"], row["role"], str(row["n"]), str(row["n_pos"]),
                             f"{row['auc_spurious_only']:.3f}", f"{row['auc_causal_only']:.3f}")
        console.print(expected)


def register(app: typer.Typer) -> None:
    """Add ``neurofeat synth`` to *app*."""
    app.command("synth")(synth)
