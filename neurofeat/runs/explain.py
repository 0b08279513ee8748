"""The ``explain`` run: Grad-CAM and occlusion maps of one patient through encoder + probe.

Steps: refuse imported backbones (no image encoder); load the backbone's encoder (a
`neurofeat pretrain` checkpoint in ``models_dir``, or an external checkpoint and
adapter) and check it is the one the store's embeddings came from; fit the linear
probe (:class:`neurofeat.analysis.probes.LinearProbe`) on the stored embeddings of
every *other* labelled patient of the task; preprocess the patient exactly as
extraction does; compute each attribution (:mod:`neurofeat.extract.explain`); when a
tumour mask is known (``mask`` or ``<patient>_seg.nii.gz`` next to the scans, as the
synthetic cohort and BraTS write it), the share of attribution inside it against random
maps. Stored: the ``attribution`` table, a montage figure per method (axial, coronal,
sagittal over T1ce and FLAIR) and the heatmap as NIfTI on the patient's scan grid.
``neurofeat explain`` only parses, calls :func:`explain_run` and prints.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurofeat.runs.inputs import check_backbone
from neurofeat.runs.tables import provenance_columns, shape
from neurofeat.store import RunInfo, Store, backbone_provenance, read_xy, write_run
from neurofeat.tasks import get_task

__all__ = ["EXPLAIN_METHODS", "EXPLAIN_TARGETS", "explain_errors", "PatientImagesError",
           "ExplainRun", "explain_run"]

#: Attribution methods (as :data:`neurofeat.extract.explain.METHODS`; repeated here so
#: that importing the runs layer does not load torch).
EXPLAIN_METHODS: tuple[str, ...] = ("gradcam", "occlusion")
EXPLAIN_TARGETS: tuple[str, ...] = ("predicted", "positive", "negative")


class PatientImagesError(ValueError):
    """The patient has no (or not all) images the encoder reads."""


def explain_errors() -> tuple[type[BaseException], ...]:
    """What explain raises for a user's mistake (the CLI prints these without a
    traceback). Imports the extraction stage (torch)."""
    from neurofeat.extract.backbone import ExtractionError
    from neurofeat.extract.checkpoint import BackboneNotFoundError, CheckpointError
    from neurofeat.extract.explain import ExplainError

    return (ExplainError, PatientImagesError, BackboneNotFoundError, CheckpointError,
            ExtractionError)

_DISPLAY = (("t1ce", "T1ce"), ("flair", "FLAIR"))


@dataclass(frozen=True, eq=False)
class ExplainRun:
    """A finished explanation of one patient.

    Attributes
    ----------
    results : dict method -> neurofeat.extract.explain.ExplainResult
    tables : dict name -> DataFrame
        Exactly the stored tables (``attribution``).
    figures : dict name -> Figure
    heatmaps : dict method -> Path
        NIfTI heatmaps on the patient's scan grid (None when not written).
    params : dict
    info : RunInfo or None
    """

    results: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    figures: dict
    heatmaps: dict[str, Path | None]
    params: dict
    info: RunInfo | None

    def summary(self) -> str:
        """One block per method."""
        return "\n".join(r.summary() for r in self.results.values())


def _no_encoder(backbone: str) -> Exception:
    from neurofeat.extract.explain import ExplainError

    return ExplainError(
        f"backbone '{backbone}' was imported from a feature table (neurofeat store import): it "
        "has no image encoder to explain. explain works on backbones extracted from images by "
        "`neurofeat extract`.")


def _looks_imported(stored: dict) -> bool:
    """Rows written by ``store import`` (run id ``import-...``, no encoder architecture)."""
    return str(stored.get("run_id", "")).startswith("import") and not stored.get("architecture")


def _patient_record(store: Store, patient: str, sequences: Sequence[str],
                    required: Sequence[str], allow_missing: bool) -> dict:
    from neurofeat.extract.dataset import load_patient_records

    wanted = list(dict.fromkeys([*required, *sequences]))
    record = load_patient_records(store, wanted, [patient])[0]
    missing = [s for s in required if not record.get(s)]
    present = [s for s in required if record.get(s)]
    if missing and (not allow_missing or not present):
        what = "no images registered" if not present else f"no {', '.join(missing)} image"
        raise PatientImagesError(
            f"patient {patient} has {what} in {store.root} (the encoder reads "
            f"{', '.join(required)}); register the scans with `neurofeat ingest --discover "
            "DIR` or choose a patient with images")
    return record


def _load_mask(record: dict, patient: str, mask: str | os.PathLike | None,
               sequences: Sequence[str]) -> tuple[Any, str] | tuple[None, str]:
    import nibabel as nib

    from neurofeat.extract.explain import ExplainError

    if mask is not None:
        path = Path(mask)
        if not path.is_file():
            raise ExplainError(f"tumour mask {path} does not exist")
        return nib.load(str(path)), f"file:{path.name}"
    for seq in sequences:
        if record.get(seq):
            candidate = Path(record[seq]).parent / f"{patient}_seg.nii.gz"
            if candidate.is_file():
                return nib.load(str(candidate)), f"segmentation:{candidate.name}"
    return None, "none"


def _write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    """A float32 heatmap as NIfTI (written inside the staged run, which write_run
    publishes in one rename)."""
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(volume, np.float32), np.asarray(affine, float))
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))


def _heatmap_file(method: str, patient: str) -> str:
    """The run-folder file name of one method's heatmap for ``patient``."""
    return f"{method}_{_file_slug(patient)}.nii.gz"


def _file_slug(patient: str) -> str:
    """A file-name-safe form of a patient id (ids are stored verbatim, files are not)."""
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in patient).strip("._")
    return slug or "patient"


def explain_run(store: Store, backbone: str, task: str, patient: str, *,
                methods: Sequence[str] = ("gradcam",), target: str = "predicted",
                layer: str | None = None, models_dir: str | os.PathLike | None = None,
                checkpoint: str | os.PathLike | None = None, adapter: str | None = None,
                mask: str | os.PathLike | None = None, occlusion_mask_size: int | None = None,
                occlusion_overlap: float = 0.0, n_random: int = 200, seed: int = 0,
                device: str = "cpu", threads: int | None = None,
                write: bool = True) -> ExplainRun:
    """Explain one patient's prediction by one backbone's probe.

    Parameters
    ----------
    store : Store
    backbone, task, patient : str
    methods : sequence of {'gradcam', 'occlusion'}
    target : {'predicted', 'positive', 'negative'}
        Class whose evidence is mapped.
    layer : str, optional
        Grad-CAM layer (default: the deepest stage whose feature map is at least 4
        voxels a side; ``layer4`` at 128^3).
    models_dir : path, optional
        Where `neurofeat pretrain` backbones live (default ``$NEUROFEAT_MODELS`` or
        ``./models``).
    checkpoint, adapter : optional
        An external checkpoint (as ``neurofeat extract --checkpoint --adapter``).
    mask : path, optional
        Tumour mask (NIfTI, > 0 = tumour) on the patient's scan grid; default
        ``<patient>_seg.nii.gz`` next to the scans when it exists.
    occlusion_mask_size, occlusion_overlap : occlusion boxes.
    n_random, seed : random-map baseline.
    device : str
    threads : int, optional
        torch intra-op threads for this run (restored after); 1 avoids OpenMP
        spin-waiting on a busy machine.
    write : bool

    Raises
    ------
    ExplainError
        Imported backbone, a checkpoint that is not the stored one, bad method/layer.
    PatientImagesError
        The patient has no images the encoder reads.
    ValueError
        Unknown backbone, task or patient; a survival task; too few labelled patients.
    """
    import torch

    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _explain(store, backbone, task, patient, methods=methods, target=target,
                        layer=layer, models_dir=models_dir, checkpoint=checkpoint,
                        adapter=adapter, mask=mask, occlusion_mask_size=occlusion_mask_size,
                        occlusion_overlap=occlusion_overlap, n_random=n_random, seed=seed,
                        device=device, write=write)
    finally:
        torch.set_num_threads(saved)


def _explain(store: Store, backbone: str, task: str, patient: str, *, methods, target, layer,
             models_dir, checkpoint, adapter, mask, occlusion_mask_size, occlusion_overlap,
             n_random, seed, device, write) -> ExplainRun:
    import nibabel as nib

    from neurofeat.analysis.probes import LinearProbe
    from neurofeat.extract.backbone import resolve_extraction_backbone
    from neurofeat.extract.checkpoint import BackboneNotFoundError
    from neurofeat.extract.explain import (METHODS, TARGETS, ExplainError, ProbeHead,
                                           explain_image, prepare_input, probe_forward,
                                           resample_to_grid)

    methods = list(dict.fromkeys(methods))
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ExplainError(f"--method must be one of {', '.join(METHODS)}, got {bad or methods}")
    if target not in TARGETS:
        raise ExplainError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    task_def = get_task(task)
    if task_def.kind == "survival":
        raise ValueError(f"task '{task_def.name}' is a survival task; explain needs a binary or "
                         "continuous task (its binarised label is explained)")
    check_backbone(store, backbone)
    provenance = backbone_provenance(store, backbone)
    stored = provenance[0] if provenance else {}
    imported = _looks_imported(stored)
    try:
        resolved = resolve_extraction_backbone(backbone, models_dir=models_dir,
                                               checkpoint=checkpoint, adapter=adapter,
                                               device=device)
    except BackboneNotFoundError:
        if imported:
            raise _no_encoder(backbone) from None
        raise
    stored_hash = stored.get("checkpoint_sha256")
    if stored_hash and resolved.checkpoint_sha256 != stored_hash:
        if imported:
            raise _no_encoder(backbone)
        raise ExplainError(
            f"the weights at {resolved.path} (sha256 {resolved.checkpoint_sha256[:12]}…) are not "
            f"the checkpoint the store's embeddings of '{backbone}' came from "
            f"({str(stored_hash)[:12]}…); point --models-dir/--checkpoint at those weights")
    pre = resolved.preprocess
    record = _patient_record(store, patient, [s for s, _ in _DISPLAY], pre.sequences,
                             allow_missing=pre.missing_sequence == "zero")
    # the probe: every other labelled patient of the task
    data = read_xy(store, backbone, task_def)
    others = data.patient_ids != patient
    labels = data.y_binary.astype(bool)[others]
    if labels.all() or not labels.any():
        raise ValueError(f"task '{task_def.name}' needs labelled patients of both classes (other "
                         f"than {patient}) with embeddings of '{backbone}' to fit the probe")
    probe = LinearProbe(random_state=seed).fit(data.X[others], labels)
    encoder = resolved.encoder.eval().to(device)
    model = ProbeHead(encoder, probe.coef_[0], float(probe.intercept_[0])).to(device)
    prepared = prepare_input(record, pre)
    prepared = type(prepared)(image=prepared.image.to(device), affine=prepared.affine,
                              brain=prepared.brain)
    forward = probe_forward(model, prepared.image)   # one forward pass, shared
    stored_row = np.flatnonzero(data.patient_ids == patient)
    cosine = None
    if stored_row.size:
        fresh = forward.embedding.astype(np.float64)
        old = data.X[stored_row[0]].astype(np.float64)
        cosine = float(fresh @ old / (np.linalg.norm(fresh) * np.linalg.norm(old) + 1e-30))
    mask_image, mask_source = _load_mask(record, patient, mask, pre.sequences)
    spatial = tuple(int(s) for s in prepared.image.shape[2:])
    mask_input = None
    if mask_image is not None:
        mask_input = resample_to_grid((np.asarray(mask_image.dataobj) > 0).astype(np.float32),
                                      mask_image.affine, prepared.affine, spatial) > 0.5
    reference_seq = next((s for s, _ in _DISPLAY if record.get(s)), None) or next(
        s for s in pre.sequences if record.get(s))
    reference = nib.load(str(record[reference_seq]))
    canonical = nib.as_closest_canonical(reference)
    backgrounds = {}
    for seq, title in _DISPLAY:
        if record.get(seq):
            backgrounds[title] = np.asarray(nib.as_closest_canonical(
                nib.load(str(record[seq]))).dataobj, dtype=np.float32)
    if not backgrounds:
        backgrounds[reference_seq] = np.asarray(canonical.dataobj, dtype=np.float32)
    mask_display = None
    if mask_image is not None:
        mask_display = resample_to_grid((np.asarray(mask_image.dataobj) > 0).astype(np.float32),
                                        mask_image.affine, canonical.affine, canonical.shape,
                                        order=0) > 0.5
    results: dict[str, Any] = {}
    rows, figures, volumes = [], {}, {}
    provenance = provenance_columns(seed, resolved.checkpoint_sha256, resolved.preprocess_sha256)
    from neurofeat.analysis.plots_trust import attribution_montage

    for method in methods:
        result = explain_image(model, prepared, method=method, target=target, layer=layer,
                               mask=mask_input, occlusion_mask_size=occlusion_mask_size,
                               occlusion_overlap=occlusion_overlap, n_random=n_random, seed=seed,
                               forward=forward)
        results[method] = result
        volumes[method] = resample_to_grid(result.heatmap, prepared.affine, reference.affine,
                                           reference.shape[:3])
        shown = resample_to_grid(result.heatmap, prepared.affine, canonical.affine,
                                 canonical.shape[:3])
        title = (f"{backbone} / {task_def.name} / {patient}: {method} "
                 f"({result.target_class} class, p = {result.probability:.2f})")
        inside = shown * (np.asarray(canonical.dataobj) > 0)
        centre = np.unravel_index(int(np.argmax(inside if inside.max() > 0 else shown)),
                                  shown.shape)
        figures[f"{method}_montage"] = attribution_montage(backgrounds, shown, mask=mask_display,
                                                           centre=centre, title=title)
        ov = result.overlap
        rows.append({
            "patient_id": patient, "method": method, "layer": result.layer,
            "target_class": result.target_class, "probability": result.probability,
            "fraction_inside": ov.fraction_inside if ov else None,
            "baseline_mean": ov.baseline_mean if ov else None,
            "baseline_ci_low": ov.baseline_ci_low if ov else None,
            "baseline_ci_high": ov.baseline_ci_high if ov else None,
            "enrichment": ov.enrichment if ov else None, "p_value": ov.p_value if ov else None,
            "n_random": ov.n_random if ov else 0, "mask_source": mask_source,
            "mask_voxels": ov.mask_voxels if ov else None,
            "brain_voxels": int(prepared.brain.sum()),
            "heatmap_file": _heatmap_file(method, patient) if write else None,
            "seconds": result.seconds})
    frame = pd.DataFrame(rows).astype({"mask_voxels": "Int64"})
    tables = {"attribution": shape(frame, "explain", "attribution", backbone=backbone,
                                   task=task_def.name, **provenance)}
    params = {"backbone": backbone, "task": task_def.name, "patient": patient,
              "methods": methods, "target": target, "layer": layer,
              "probe": "LinearProbe on every other labelled patient", "probe_C": probe.C_,
              "n_probe_patients": int(others.sum()), "mask_source": mask_source,
              "occlusion_mask_size": occlusion_mask_size, "occlusion_overlap": occlusion_overlap,
              "n_random": n_random, "seed": seed, "device": str(device),
              "checkpoint_sha256": resolved.checkpoint_sha256,
              "preprocess_sha256": resolved.preprocess_sha256,
              "embedding_cosine_to_stored": cosine, "input_grid_shape": list(spatial),
              "heatmap_space": f"the patient's {reference_seq} scan grid (its affine)",
              "details": {m: r.params for m, r in results.items()}}
    info, heatmaps = None, {m: None for m in methods}
    if write:
        names = {method: _heatmap_file(method, patient) for method in volumes}
        files = {names[method]: functools.partial(_write_nifti, volume=volume,
                                                  affine=reference.affine)
                 for method, volume in volumes.items()}
        info = write_run(store, "explain", tables, params=params, figures=figures,
                         files=files)
        heatmaps.update({method: info.path / name for method, name in names.items()})
    return ExplainRun(results=results, tables=tables, figures=figures, heatmaps=heatmaps,
                      params=params, info=info)
