"""Extraction benchmark (issue 6): ratios measured in one run, on CPU.

1. Pipeline efficiency = time of N forward passes on preloaded tensors / time of
   ``extract_embeddings`` end to end on the same N patients (same batches; decoding,
   preprocessing, store writes and commit included). Target >= 0.8 with the small
   test encoder (MONAI resnet10, widen 0.25). Measured on two cohorts (the project's
   synthetic cohort, and float32 volumes whose brain crop must be shrunk), each:
   cold with the CPU default (decoding in one background thread), cold with 2 worker
   processes, and with a second backbone served by the preprocessed-volume cache;
   first with the encoder on every core (the default), then on all cores but one
   (``extract --threads``; the reference forward passes on as many), which leaves
   decoding a core of its own as on a GPU machine.
   Also printed: the single-core CPU time of decoding + preprocessing one patient.
   With the encoder on every core it bounds the cold ratio on a machine with few
   cores, since each patient then costs (preprocess + forward) core-time; with a core
   left to decoding the ratio reaches 0.8 when decoding a patient on one core takes
   no longer than its forward pass on the others.
2. Peak memory of an extraction of 400 patients vs 100 (each in a fresh subprocess):
   target <= 1.2x. Reported both as total peak RSS and as the increase over the RSS
   right before extraction starts (the part that could grow with the cohort).
3. Volumes/s of a ResNet50 (widen 1, 4 channels) at 128^3 on CPU (forward only, a few
   volumes) and end to end, with its FLOPs per forward counted by torch's
   FlopCounterMode.
4. On a CUDA device: forward volumes/s of ResNet50 @128^3 (bf16 autocast +
   channels_last_3d, the extraction's path) and model-FLOPs utilisation = volumes/s x
   counted GFLOP per forward / peak bf16 FLOP/s, for conv1 stride 2 and 1. Skipped
   without CUDA (``--accelerator-device cpu --parts 4`` checks the code path on CPU).

Usage: python benchmarks/bench_extract.py [--patients 96] [--input-size 64] [--workers 2]
       [--repeats 3] [--skip-resnet50] [--parts 1,2,3,4] [--accelerator-device cuda] [--peak-tflops T]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def write_cohort(root: Path, n_patients: int, n_distinct: int = 24, shape=(96, 96, 72), spacing: float = 2.0) -> object:
    """A store of *n_patients* whose scans cycle over *n_distinct* synthetic patients
    (float32 ellipsoid brains filling 80/75/70 % of the field of view)."""
    import nibabel as nib
    import pyarrow as pa

    from neurofeat.store import Store, write_tables

    store = Store.open(root / "store", create=True)
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    files = []
    for k in range(n_distinct):
        centre = rng.uniform(-0.1, 0.1, 3)[:, None, None, None]
        brain = (((grid - centre) / np.array([0.8, 0.75, 0.7])[:, None, None, None]) ** 2).sum(0) <= 1
        entry = {}
        for s, seq in enumerate(("t1", "t1ce", "t2", "flair")):
            vol = np.zeros(shape, np.float32)
            vol[brain] = 100 + 30 * s + rng.normal(0, 15, int(brain.sum()))
            path = root / "images" / f"S{k:03d}_{seq}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(vol, np.diag([spacing, spacing, spacing, 1.0])), str(path))
            entry[seq] = (str(path), hashlib.sha256(path.read_bytes()).hexdigest())
        files.append(entry)
    patients, scans = [], []
    for i in range(n_patients):
        pid = f"P{i:05d}"
        patients.append({"patient_id": pid, "site": "ABCD"[i % 4]})
        for seq, (path, sha) in files[i % n_distinct].items():
            scans.append({"patient_id": pid, "sequence": seq, "path": path, "sha256": sha})
    write_tables(store, {"patients": pa.Table.from_pylist(patients), "scans": pa.Table.from_pylist(scans)})
    return store


def make_backbone(models: Path, name: str, arch: str, widen: float, size: int, spacing: float, seed: int = 0) -> Path:
    from neurofeat.extract.checkpoint import save_checkpoint
    from neurofeat.extract.encoders import EncoderConfig, build_encoder
    from neurofeat.extract.preprocess import PreprocessConfig

    torch.manual_seed(seed)
    cfg = EncoderConfig(arch=arch, widen_factor=widen, input_size=size, spacing=(spacing,) * 3)
    pre = PreprocessConfig(spacing=spacing, input_size=size)
    card = {"method": "bench", "preprocessing": pre.to_dict(), "preprocess_sha256": pre.sha256()}
    return save_checkpoint(models / name, build_encoder(cfg), card)


def preloaded_batches(store, backbone, batch_size: int) -> list[torch.Tensor]:
    """The extraction's batches, preprocessed once and held in memory."""
    from neurofeat.extract.dataset import fixed_chunks, load_patient_records
    from neurofeat.extract.preprocess import build_transforms

    records = load_patient_records(store, backbone.preprocess.sequences)
    pipeline = build_transforms(backbone.preprocess)
    cache: dict[str, torch.Tensor] = {}
    batches = []
    for chunk in fixed_chunks(len(records), batch_size):
        images = []
        for i in chunk:
            key = records[i]["scan_sha256"]
            if key not in cache:
                cache[key] = pipeline(dict(records[i]))["image"]
            images.append(cache[key])
        batches.append(torch.stack(images))
    return batches


def forward_seconds(encoder, batches: list[torch.Tensor]) -> float:
    """Time of the forward passes alone (same call as extraction: embed_batch)."""
    from neurofeat.extract.embed import embed_batch

    start = time.perf_counter()
    for batch in batches:
        embed_batch(encoder, batch, torch.device("cpu"))
    return time.perf_counter() - start


def extract_seconds(store, backbone, **kwargs) -> float:
    from neurofeat.extract.extractor import extract_embeddings

    start = time.perf_counter()
    result = extract_embeddings(store, backbone, **kwargs)
    elapsed = time.perf_counter() - start
    assert result.n_failed == 0 and result.n_written > 0
    return elapsed


MEMORY_PROBE = """
import json, resource, sys, time
import psutil
from neurofeat.store import Store
from neurofeat.extract.backbone import resolve_extraction_backbone
from neurofeat.extract.extractor import extract_embeddings
store = Store.open(sys.argv[1])
backbone = resolve_extraction_backbone(sys.argv[3], models_dir=sys.argv[2])
import neurofeat.extract.dataset, neurofeat.store  # imports done before the baseline
before = psutil.Process().memory_info().rss
result = extract_embeddings(store, backbone, batch_size=int(sys.argv[4]), workers=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": peak, "written": result.n_written}))
"""


def memory_run(store, models: Path, name: str, batch_size: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(store.root), str(models), name, str(batch_size)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def synth_store(root: Path, n_patients: int) -> object:
    """A store holding a fresh ``neurofeat synth`` cohort of *n_patients* (64^3, 2 mm, int16)."""
    from neurofeat.ingest import ingest
    from neurofeat.store import Store
    from neurofeat.synth import generate_cohort

    generate_cohort(root / "cohort", n=n_patients, seed=0, n_jobs=2, write_segmentation=False)
    ingest(root / "store", manifest=root / "cohort" / "manifest.csv", clinical=root / "cohort" / "clinical.csv")
    return Store.open(root / "store")


def preprocess_core_ms(store, backbone, n: int = 16) -> float:
    """Single-thread CPU time of decoding + preprocessing one patient (ms, best of 2)."""
    from neurofeat.extract.dataset import load_patient_records
    from neurofeat.extract.preprocess import build_transforms

    records = load_patient_records(store, backbone.preprocess.sequences)[:n]
    pipeline = build_transforms(backbone.preprocess)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(2):
            start = time.process_time()
            for record in records:
                pipeline(dict(record))
            best = min(best, (time.process_time() - start) / len(records) * 1e3)
        return best
    finally:
        torch.set_num_threads(threads)


def efficiency(store, small, cache: Path, label: str, args, threads: int | None = None) -> None:
    """Print the pipeline efficiency (cold and cached) of *small* on *store*.

    *threads*: intra-op threads of the encoder, for the reference forward passes and
    the extraction alike (``extract --threads``); default torch's (every core).
    """
    # Interleaved repeats, best of each: the machine is shared, so single timings are noisy.
    batches = preloaded_batches(store, small, args.batch_size)
    n = sum(len(b) for b in batches)
    default_threads = torch.get_num_threads()
    threads = threads or default_threads
    torch.set_num_threads(threads)
    try:
        forward_seconds(small.encoder, batches[:1])  # warm-up (oneDNN primitives)
        extract_seconds(store, replace(small, name=f"fill-t{threads}"), batch_size=args.batch_size, cache_dir=cache)
        fwd, cold, cold_procs, warm = [], [], [], []
        for r in range(args.repeats):
            fwd.append(forward_seconds(small.encoder, batches))
            cold.append(extract_seconds(store, replace(small, name=f"cold{r}-t{threads}"), batch_size=args.batch_size,
                                        threads=threads))
            if threads == default_threads:
                cold_procs.append(extract_seconds(store, replace(small, name=f"procs{r}-t{threads}"),
                                                  batch_size=args.batch_size, workers=args.workers))
            warm.append(extract_seconds(store, replace(small, name=f"warm{r}-t{threads}"), batch_size=args.batch_size,
                                        cache_dir=cache, threads=threads))
    finally:
        torch.set_num_threads(default_threads)
    f = min(fwd)
    print(f"[1] {label}, {n} patients, encoder on {threads} of {default_threads} CPU threads")
    print(f"    forward only {f:.2f} s ({f / n * 1e3:.1f} ms/patient; best of {args.repeats}, "
          f"all {[round(t, 2) for t in fwd]})")
    print(f"    extract, cold (decode + preprocess in a background thread): {min(cold):.2f} s "
          f"({n / min(cold):.1f} patients/s) -> pipeline efficiency {f / min(cold):.2f} (target >= 0.8)")
    if cold_procs:
        print(f"    extract, cold, {args.workers} worker processes: {min(cold_procs):.2f} s "
              f"-> pipeline efficiency {f / min(cold_procs):.2f}")
    print(f"    extract, preprocessed volumes from the cache (a second backbone): {min(warm):.2f} s "
          f"-> pipeline efficiency {f / min(warm):.2f} (target >= 0.8)")


def gflop_per_forward(encoder: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOP of one forward pass on *x*, counted by torch's FlopCounterMode (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        encoder(x)
    return counter.get_total_flops() / 1e9


# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by device-name fragment.
BF16_PEAK_TFLOPS = {"H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}


def accelerator_throughput(device: torch.device, batch: int, iters: int, peak_tflops: float | None,
                           arch: str = "resnet50", size: int = 128) -> None:
    """Forward volumes/s and model-FLOPs utilisation of *arch* @ size^3 (4 channels) on *device*.

    The extraction's own path is timed (``embed_batch``: inference_mode, and on CUDA bf16
    autocast + channels_last_3d) on a preloaded batch, for conv1 stride 2 (the networks
    ``neurofeat pretrain`` builds) and stride 1 (MONAI's default, the ~925 GFLOP figure).
    FLOPs per forward are counted by torch's FlopCounterMode (2 per multiply-add).
    """
    from neurofeat.extract.encoders import EncoderConfig, build_encoder
    from neurofeat.extract.embed import embed_batch, prepare_encoder

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if peak_tflops is None and device.type == "cuda":
        peak_tflops = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    x = torch.randn(batch, 4, size, size, size)
    for stride in (2, 1):
        encoder = prepare_encoder(build_encoder(EncoderConfig(arch=arch, input_size=size, conv1_stride=stride)), device)
        gflop = gflop_per_forward(encoder, x[:1].to(device))
        embed_batch(encoder, x, device)  # warm-up (cuDNN / oneDNN algorithm choice)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            embed_batch(encoder, x, device)  # returns a host array: synchronises
        rate = batch * iters / (time.perf_counter() - start)
        mfu = "" if not peak_tflops else f", MFU {rate * gflop / 1e3 / peak_tflops:.1%} of {peak_tflops:.0f} TFLOP/s bf16"
        print(f"[4] {arch} conv1 stride {stride} @{size}^3 on {name}: {gflop:.0f} GFLOP/forward, batch {batch}: "
              f"{rate:.1f} volumes/s ({rate * gflop / 1e3:.1f} TFLOP/s{mfu})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=96)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-resnet50", action="store_true")
    parser.add_argument("--parts", default="1,2,3,4", help="Which measurements to run (comma-separated); "
                        "4 = accelerator volumes/s and MFU (CUDA only unless --accelerator-device cpu).")
    parser.add_argument("--accelerator-device", default="cuda")
    parser.add_argument("--accelerator-batch", type=int, default=8)
    parser.add_argument("--accelerator-iters", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="Peak bf16 TFLOP/s for MFU (default: from the device name for H100/H200/A100).")
    args = parser.parse_args()

    from neurofeat.extract.backbone import resolve_extraction_backbone

    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        models = tmp / "models"
        size = args.input_size
        make_backbone(models, "small", "resnet10", 0.25, size, 2.0, seed=0)
        print(f"torch threads: {torch.get_num_threads()}, input {size}^3, batch {args.batch_size}, "
              f"workers {args.workers}, {args.patients} patients")

        parts = set(args.parts.split(","))
        # 1. pipeline efficiency -------------------------------------------------
        small = resolve_extraction_backbone("small", models_dir=models)
        cohorts = {} if "1" not in parts else {
            "synthetic cohort (neurofeat synth: 64^3 int16 at 2 mm, the demo/test data)":
                synth_store(tmp / "synth", args.patients),
            "float32 cohort (96x96x72 at 2 mm: the brain crop is shrunk to fit the input)":
                write_cohort(tmp / "eff", args.patients),
        }
        for k, (label, store) in enumerate(cohorts.items()):
            print(f"[1] {label}: decode + preprocess {preprocess_core_ms(store, small):.1f} ms/patient on one core")
            efficiency(store, small, tmp / f"cache{k}", label, args)
            if torch.get_num_threads() > 1:
                # Decoding gets a core of its own, as on a GPU machine: what the ratio
                # measures then is whether the pipeline keeps the model fed.
                efficiency(store, small, tmp / f"cache{k}", label, args, threads=torch.get_num_threads() - 1)

        # 2. memory: 400 vs 100 patients ------------------------------------------
        if "2" in parts:
            small_mem = 32  # memory is about bookkeeping per patient; keep compute small
            make_backbone(models, "mem", "resnet10", 0.25, small_mem, 6.0, seed=2)
            peaks = {}
            for n in (100, 400):
                s = write_cohort(tmp / f"mem{n}", n, n_distinct=8)
                peaks[n] = memory_run(s, models, "mem", args.batch_size)
                assert peaks[n]["written"] == n
            p100, p400 = peaks[100], peaks[400]
            print(f"[2] peak RSS 100 patients {p100['peak'] / 2**20:.0f} MiB, 400 patients {p400['peak'] / 2**20:.0f} MiB "
                  f"-> ratio {p400['peak'] / p100['peak']:.3f} (target <= 1.2); increase during extraction "
                  f"{(p100['peak'] - p100['before']) / 2**20:.1f} vs {(p400['peak'] - p400['before']) / 2**20:.1f} MiB")

        # 3. ResNet50 @ 128^3 --------------------------------------------------------
        if "3" in parts and not args.skip_resnet50:
            make_backbone(models, "r50", "resnet50", 1.0, 128, 1.0, seed=3)
            r50 = resolve_extraction_backbone("r50", models_dir=models)
            # MNI-sized 1 mm volumes (182 x 218 x 182 mm): the brain crop is shrunk to 128^3
            s = write_cohort(tmp / "r50", 6, n_distinct=6, shape=(180, 216, 180), spacing=1.0)
            r50_batches = preloaded_batches(s, r50, 2)
            forward_seconds(r50.encoder, r50_batches[:1])  # warm-up
            t_fwd = forward_seconds(r50.encoder, r50_batches)
            t_e2e = extract_seconds(s, r50, batch_size=2)
            prep = preprocess_core_ms(s, r50, n=6)
            gflop = gflop_per_forward(r50.encoder, r50_batches[0][:1])
            print(f"[3] resnet50 (conv1 stride {r50.card.get('conv1_stride')}) @128^3, 4 channels, on CPU: "
                  f"{gflop:.0f} GFLOP per forward; forward {6 / t_fwd:.3f} volumes/s "
                  f"({6 / t_fwd * gflop:.0f} GFLOP/s), end-to-end {6 / t_e2e:.3f} volumes/s "
                  f"(efficiency {t_fwd / t_e2e:.2f}; decode + preprocess {prep:.0f} ms/patient on one core; "
                  f"{torch.get_num_threads()} threads). GPU: not measured (no GPU lent to this task).")
        # 4. accelerator ------------------------------------------------------------
        if "4" in parts:
            device = torch.device(args.accelerator_device)
            if device.type == "cuda" and not torch.cuda.is_available():
                print("[4] GPU volumes/s and MFU: skipped (no CUDA device here; run on a GPU machine)")
            else:
                accelerator_throughput(device, args.accelerator_batch, args.accelerator_iters, args.peak_tflops)
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
