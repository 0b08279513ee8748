"""Benchmark: time per patient of ``neurofeat synth`` at the default 64³ × 2 mm grid.

Target (issue 4): generating 240 patients at 64³ takes well under a minute on 2 cores.

Measured in one process, after a warm-up that builds the MNI152 template and imports
MONAI (one-off costs, reported separately):

* tables only (labels, traits, survival) per patient;
* rendering per patient (anatomy warp, tumour, contrasts, MONAI acquisition), CPU and
  wall time, and its parts;
* writing the five gzipped NIfTI files per patient;
* the whole ``neurofeat synth --n 240`` in a fresh process with ``--jobs 1`` and
  ``--jobs 2`` (imports, template, rendering, writing), wall and CPU time.

Reference run (same process): reading the four written NIfTI files of a patient back
with nibabel (what ``ingest``/``extract`` do per patient); every step is reported as a
multiple of it.  Resident memory of this process comes from psutil.  On a shared
machine the wall times depend on the load (printed in the title); the CPU times do not.

Run: python benchmarks/bench_synth.py [--n 240] [--size 64] [--spacing 2.0]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, repeat: int) -> tuple[float, float]:
    """Mean (cpu seconds, wall seconds) of *fn* over *repeat* calls."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(repeat):
        fn(i)
    return (time.process_time() - cpu0) / repeat, (time.perf_counter() - wall0) / repeat


def main(n: int = 240, size: int = 64, spacing: float = 2.0) -> None:
    import nibabel as nib
    import psutil
    from rich.console import Console
    from rich.table import Table

    from neurofeat.synth import SEQUENCES, grid_affine, load_mni152_tissues, render_patient, simulate_tables
    from neurofeat.synth.cohort import write_nifti_gz

    console = Console()
    process = psutil.Process()
    t0 = time.perf_counter()
    load_mni152_tissues(spacing)
    template_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    import monai  # noqa: F401

    monai_s = time.perf_counter() - t0

    tables = simulate_tables(240, seed=0)
    protocols = {p.site: p for p in tables.protocols}
    rows = [row for _, row in tables.truth.iterrows()]
    render_patient(rows[0], protocols[rows[0]["site"]], size=size, spacing=spacing, rng=np.random.default_rng(0))

    tables_cpu, tables_wall = _timed(lambda i: simulate_tables(240, seed=i), 5)
    rendered = {}

    def render(i: int) -> None:
        row = rows[i % len(rows)]
        rendered[i] = render_patient(row, protocols[row["site"]], size=size, spacing=spacing, rng=np.random.default_rng(i))

    render_cpu, render_wall = _timed(render, 20)
    workdir = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    affine = grid_affine(size, spacing)

    def write(i: int) -> None:
        for sequence in SEQUENCES:
            write_nifti_gz(workdir / f"p{i}_{sequence}.nii.gz", rendered[i].images[sequence], affine)
        write_nifti_gz(workdir / f"p{i}_seg.nii.gz", rendered[i].segmentation, affine)

    write_cpu, write_wall = _timed(write, 20)

    def read(i: int) -> None:
        for sequence in SEQUENCES:
            np.asarray(nib.load(workdir / f"p{i}_{sequence}.nii.gz").dataobj)

    read_cpu, read_wall = _timed(read, 20)
    bytes_per_patient = sum(f.stat().st_size for f in workdir.glob("p0_*")) / 1.0

    whole = {}
    for jobs in (1, 2):
        # the CLI in a fresh process: imports, template, rendering and writing all count
        out = workdir / f"cohort{jobs}"
        command = [sys.executable, "-m", "neurofeat", "synth", "--out", str(out), "--n", str(n), "--size", str(size),
                   "--spacing", str(spacing), "--seed", "0", "--jobs", str(jobs)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        whole[jobs] = (wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    peak_rss_mb = process.memory_info().rss / 2**20
    shutil.rmtree(workdir)

    table = Table(title=f"neurofeat synth, {size}³ × {spacing} mm ({psutil.cpu_count()} CPUs, load {psutil.getloadavg()[0]:.1f})")
    for column in ("step", "cpu s/patient", "wall s/patient", "× reference (read 4 NIfTI)"):
        table.add_column(column, justify="right" if column != "step" else "left")
    table.add_row("reference: nibabel read of 4 images", f"{read_cpu:.4f}", f"{read_wall:.4f}", "1.0")
    table.add_row("tables only (labels, traits, survival)", f"{tables_cpu / 240:.5f}", f"{tables_wall / 240:.5f}", f"{tables_wall / 240 / read_wall:.2f}")
    table.add_row("render (anatomy, tumour, acquisition)", f"{render_cpu:.4f}", f"{render_wall:.4f}", f"{render_wall / read_wall:.1f}")
    table.add_row("write 5 × .nii.gz", f"{write_cpu:.4f}", f"{write_wall:.4f}", f"{write_wall / read_wall:.1f}")
    for jobs, (wall, cpu) in whole.items():
        table.add_row(f"neurofeat synth --n {n} --jobs {jobs} (whole run)", f"{cpu / n:.4f}", f"{wall / n:.4f}", f"{wall / n / read_wall:.1f}")
    console.print(table)
    console.print(
        f"one-off in this process: template {template_s:.1f} s, MONAI import {monai_s:.1f} s; "
        f"disk {bytes_per_patient / 2**20:.2f} MiB/patient; peak RSS here {peak_rss_mb:.0f} MiB\n"
        f"whole run, {n} patients: 1 job {whole[1][0]:.1f} s wall ({whole[1][1]:.1f} s CPU), "
        f"2 jobs {whole[2][0]:.1f} s wall ({whole[2][1]:.1f} s CPU); speed-up {whole[1][0] / whole[2][0]:.2f}x; "
        f"on 2 idle cores the 2-job run needs about {whole[2][1] / 2:.0f} s (CPU / 2; target: well under 60 s for 240)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--spacing", type=float, default=2.0)
    args = parser.parse_args()
    main(args.n, args.size, args.spacing)
