"""Where does the encoder look? Grad-CAM and occlusion sensitivity through a probe head.

The fitted linear probe (coefficients on the embedding, from the analysis stage) is
turned into a torch head on top of the frozen encoder (:class:`ProbeHead`), so that
MONAI's attribution tools can differentiate or perturb the whole image -> probability
chain:

- **Grad-CAM** (:class:`monai.visualize.GradCAM`, Selvaraju et al. 2017) at a stage of
  the encoder (default: the deepest stage whose feature map is at least 4 voxels a
  side, i.e. ``layer4`` of the MONAI ResNets at 128^3, ``layer2`` at 32^3): the
  stage's activations weighted by the spatially averaged gradient of the explained
  class's logit, rectified, upsampled (trilinear) to the input.
- **Occlusion sensitivity** (:class:`monai.visualize.OcclusionSensitivity`, the
  quantitative check NeuroRAD-FM asks for): each box of ``mask_size`` voxels is
  occluded in turn (MONAI's default Gaussian occlusion) and the drop of the explained
  class's probability, clipped at 0, is the importance of that region.

The explained class is the probe's prediction for the patient (``target='predicted'``)
or the positive/negative class. The head outputs the logits ``(-z/2, z/2)`` with
``z = w . embedding + b``, so that ``softmax`` gives exactly ``(1 - p, p)`` with
``p = sigmoid(z)``, the probe's probability.

Spaces: attribution is computed on the encoder's input grid (after reorientation,
resampling, brain crop and fitting, see :mod:`neurofeat.extract.preprocess`); the
preprocessing keeps the affine of that grid (``track_meta``), so maps and masks move
between it and the patient's scan grid by :func:`resample_to_grid`. The heatmap written
as NIfTI lies on the patient's own scan grid (the input space, same affine).

Concentration in the tumour (:func:`attribution_overlap`): the share of the
attribution inside the tumour mask, over brain voxels, against random smooth maps
(uniform noise on the map's native coarse grid, upsampled the same way) over the same
brain: their mean and central interval, the enrichment ``fraction / baseline`` and the
share of random maps at least as concentrated (a Monte-Carlo p-value).

This module imports torch/MONAI (extraction stage) and never the analysis stage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "METHODS",
    "TARGETS",
    "ExplainError",
    "ProbeHead",
    "find_target_layer",
    "auto_layer",
    "ProbeForward",
    "probe_forward",
    "pick_layer",
    "gradcam_map",
    "occlusion_map",
    "resample_to_grid",
    "random_smooth_maps",
    "AttributionOverlap",
    "attribution_overlap",
    "PreparedInput",
    "prepare_input",
    "ExplainResult",
    "explain_image",
]

#: Attribution methods of ``neurofeat explain``.
METHODS: tuple[str, ...] = ("gradcam", "occlusion")
#: Which class an attribution explains.
TARGETS: tuple[str, ...] = ("predicted", "positive", "negative")


class ExplainError(ValueError):
    """An explanation cannot be computed (the message names what and the fix)."""


class ProbeHead(nn.Module):
    """A frozen encoder followed by a fitted linear probe, as a two-logit classifier.

    Parameters
    ----------
    encoder : torch.nn.Module
        ``(B, C, D, H, W) -> (B, E)``.
    coef : array-like, shape (E,)
        Probe coefficients on the (unstandardised) embedding.
    intercept : float

    Notes
    -----
    ``forward`` returns ``(B, 2)`` logits ``(-z/2, z/2)``: softmax gives ``(1 - p, p)``
    with ``p = sigmoid(z)``.
    """

    def __init__(self, encoder: nn.Module, coef: Any, intercept: float) -> None:
        super().__init__()
        self.encoder = encoder
        weight = torch.as_tensor(np.asarray(coef, dtype=np.float32).reshape(1, -1))
        self.head = nn.Linear(weight.shape[1], 1)
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.fill_(float(intercept))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        """Logits ``(-z/2, z/2)``, shape ``(B, 2)``."""
        z = self.head(self.encoder(x))
        return torch.cat([-z / 2, z / 2], dim=1)

    def probability(self, x: torch.Tensor) -> float:
        """The probe's probability of the positive class for a one-image batch."""
        with torch.no_grad():
            return float(torch.softmax(self(x), dim=1)[0, 1])


def find_target_layer(model: nn.Module, layer: str | None = None) -> str:
    """Name (in ``model.named_modules()``) of the layer Grad-CAM hooks.

    Parameters
    ----------
    model : torch.nn.Module
        Usually a :class:`ProbeHead`.
    layer : str, optional
        A module name, with or without the ``encoder.`` prefix (e.g. ``layer3``). Default:
        the last module named ``layer4`` (the last ResNet stage), else the last 3-D
        convolution.

    Raises
    ------
    ExplainError
        The named layer does not exist (lists the encoder's stages).
    """
    names = [name for name, _ in model.named_modules() if name]
    if layer:
        for candidate in (layer, f"encoder.{layer}"):
            if candidate in names:
                return candidate
        stages = [n for n in names if n.split(".")[-1].startswith("layer") and n.count(".") <= 2]
        raise ExplainError(f"the encoder has no layer '{layer}'; its stages are "
                           f"{', '.join(stages[:12]) or ', '.join(names[:12])}")
    stages = [n for n in names if n.split(".")[-1] == "layer4"]
    if stages:
        return stages[-1]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv3d)]
    if not convs:
        raise ExplainError("the encoder has no 3-D convolution for Grad-CAM; pass --layer NAME")
    return convs[-1]


_STAGES = ("layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True, eq=False)
class ProbeForward:
    """One forward pass of a :class:`ProbeHead` on one image.

    Attributes
    ----------
    embedding : ndarray, shape (E,)
    probability : float
        The probe's probability of the positive class.
    stage_shapes : dict name -> spatial shape
        Feature-map shape of each ResNet stage (``encoder.layer1`` ...).
    """

    embedding: np.ndarray
    probability: float
    stage_shapes: dict


def probe_forward(model: ProbeHead, image: torch.Tensor) -> ProbeForward:
    """Embedding, probability and stage shapes from a single forward pass."""
    stages = [(n, m) for n, m in model.named_modules() if n and n.split(".")[-1] in _STAGES]
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(
        lambda _m, _i, out, name=n: shapes.__setitem__(name, tuple(out.shape[2:])))
        for n, m in stages]
    try:
        with torch.no_grad():
            embedding = model.encoder(image)
            z = float(model.head(embedding)[0, 0])
    finally:
        for hook in hooks:
            hook.remove()
    return ProbeForward(embedding=embedding[0].detach().cpu().numpy(),
                        probability=float(1.0 / (1.0 + np.exp(-z))), stage_shapes=shapes)


def pick_layer(stage_shapes: Mapping[str, Sequence[int]], *, min_side: int = 4) -> str | None:
    """The deepest stage whose feature map is at least ``min_side`` voxels a side."""
    if not stage_shapes:
        return None
    names = list(stage_shapes)
    fitting = [n for n in names if min(stage_shapes[n]) >= min_side]
    if fitting:
        return fitting[-1]
    return max(names, key=lambda n: min(stage_shapes[n]))


def auto_layer(model: nn.Module, image: torch.Tensor, *, min_side: int = 4) -> str:
    """The deepest ResNet stage whose feature map is at least ``min_side`` voxels a side.

    Grad-CAM's resolution is the hooked layer's: at 128^3 a ResNet's last stage
    (``layer4``) is 4^3, but at 32^3 it is 1^3, a single value that cannot localise
    anything. Falls back to :func:`find_target_layer` when the model has no stages.
    Costs one forward pass (see :func:`probe_forward` to share it).
    """
    chosen = pick_layer(probe_forward(model, image).stage_shapes, min_side=min_side)
    return chosen or find_target_layer(model)


def gradcam_map(model: ProbeHead, image: torch.Tensor, *, layer: str | None = None,
                class_index: int = 1) -> tuple[np.ndarray, tuple[int, ...], str]:
    """Grad-CAM of one class through ``model`` (MONAI ``GradCAM``).

    Parameters
    ----------
    model : ProbeHead
    image : torch.Tensor, shape (1, C, D, H, W)
    layer : str, optional
        See :func:`find_target_layer`; default :func:`auto_layer` (the deepest stage
        whose feature map is at least 4 voxels a side: ``layer4`` at 128^3).
    class_index : {0, 1}
        1 = positive class.

    Returns
    -------
    heatmap : ndarray, shape (D, H, W)
        Rectified class activation map upsampled to the input (not normalised).
    native_shape : tuple of int
        Spatial shape of the layer's feature map (the map's true resolution).
    layer : str
        The layer used.
    """
    from monai.visualize import GradCAM

    model.eval()
    name = find_target_layer(model, layer) if layer else auto_layer(model, image)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    cam = GradCAM(nn_module=model, target_layers=name, postprocessing=lambda x: x)
    x = image.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        native = cam.compute_map(x, class_idx=class_index)
        heat = cam._upsample_and_post_process(native, x)
    return (heat.detach().cpu().numpy()[0, 0].astype(np.float32),
            tuple(int(s) for s in native.shape[2:]), name)


def occlusion_map(model: ProbeHead, image: torch.Tensor, *, mask_size: int | Sequence[int],
                  class_index: int = 1, overlap: float = 0.0, n_batch: int = 8,
                  bounding_box: Sequence[int] | None = None) -> np.ndarray:
    """Occlusion sensitivity of one class (MONAI ``OcclusionSensitivity``).

    Parameters
    ----------
    model : ProbeHead
    image : torch.Tensor, shape (1, C, D, H, W)
    mask_size : int or 3 ints
        Occluded box (voxels).
    class_index : {0, 1}
    overlap : float in [0, 1)
        Overlap of neighbouring boxes (0: each box once; cost grows as
        ``1 / (1 - overlap)^3``).
    n_batch : int
        Occluded images per forward pass.
    bounding_box : 6 ints, optional
        ``(d0, d1, h0, h1, w0, w1)``: occlude only inside (e.g. the brain).

    Returns
    -------
    ndarray, shape (D, H, W)
        ``max(p - p_occluded, 0)`` for the class: how much hiding each region lowers
        its probability (0 outside ``bounding_box``).
    """
    from monai.visualize import OcclusionSensitivity

    model.eval()
    occ = OcclusionSensitivity(nn_module=model, mask_size=mask_size, n_batch=n_batch,
                               verbose=False, overlap=overlap, activate=True)
    with torch.no_grad():
        reference = torch.softmax(model(image), dim=1)[0, class_index].item()
        box = list(bounding_box) if bounding_box is not None else None
        occ_map, _ = occ(image, b_box=box)
    probabilities = occ_map.detach().cpu().numpy()[0, class_index]
    importance = np.clip(reference - probabilities, 0.0, None).astype(np.float32)
    if box is None:
        return importance
    full = np.zeros(image.shape[2:], np.float32)
    d0, d1, h0, h1, w0, w1 = [int(v) for v in box]
    # MONAI crops the map to the box extended by the mask half-width; place it back
    target = full[d0:d1 + 1, h0:h1 + 1, w0:w1 + 1]
    if importance.shape == target.shape:
        full[d0:d1 + 1, h0:h1 + 1, w0:w1 + 1] = importance
        return full
    starts = [max(0, (s - t) // 2) for s, t in zip(importance.shape, target.shape)]
    crop = importance[tuple(slice(a, a + t) for a, t in zip(starts, target.shape))]
    full[d0:d0 + crop.shape[0], h0:h0 + crop.shape[1], w0:w0 + crop.shape[2]] = crop
    return full


def resample_to_grid(volume: np.ndarray, source_affine: np.ndarray, target_affine: np.ndarray,
                     target_shape: Sequence[int], *, order: int = 1) -> np.ndarray:
    """Resample a volume from one voxel grid onto another through world coordinates.

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z)
        Values on the source grid.
    source_affine, target_affine : ndarray, shape (4, 4)
        Voxel -> world (mm) of each grid.
    target_shape : 3 ints
    order : int
        Spline order (0 nearest, 1 trilinear).

    Returns
    -------
    ndarray, shape target_shape
        0 outside the source volume.
    """
    from scipy import ndimage

    mapping = np.linalg.inv(np.asarray(source_affine, float)) @ np.asarray(target_affine, float)
    return ndimage.affine_transform(np.asarray(volume, dtype=np.float32), mapping[:3, :3],
                                    offset=mapping[:3, 3], output_shape=tuple(target_shape),
                                    order=order, mode="constant", cval=0.0)


def random_smooth_maps(shape: Sequence[int], coarse_shape: Sequence[int], n: int,
                       seed: int) -> torch.Tensor:
    """``n`` random non-negative maps as smooth as a map of native ``coarse_shape``.

    Uniform noise on the coarse grid, upsampled trilinearly to ``shape`` (the way
    Grad-CAM maps are upsampled). :func:`attribution_overlap` draws the same maps (same
    seed) without materialising them.

    Returns
    -------
    torch.Tensor, shape (n, *shape)
    """
    generator = torch.Generator().manual_seed(int(seed))
    coarse = torch.rand((n, 1, *[max(1, int(c)) for c in coarse_shape]), generator=generator)
    up = torch.nn.functional.interpolate(coarse, size=tuple(int(s) for s in shape),
                                         mode="trilinear", align_corners=False)
    return up[:, 0]


@dataclass(frozen=True)
class AttributionOverlap:
    """How much of an attribution map lies inside the tumour.

    Attributes
    ----------
    fraction_inside : float
        ``sum(map * tumour) / sum(map)`` over brain voxels.
    baseline_mean, baseline_ci_low, baseline_ci_high : float
        The same for random smooth maps: mean and central 95 % interval.
    enrichment : float
        ``fraction_inside / baseline_mean``.
    p_value : float
        ``(1 + #{random >= observed}) / (1 + n_random)``.
    n_random, mask_voxels, brain_voxels : int
    """

    fraction_inside: float
    baseline_mean: float
    baseline_ci_low: float
    baseline_ci_high: float
    enrichment: float
    p_value: float
    n_random: int
    mask_voxels: int
    brain_voxels: int

    def summary(self) -> str:
        """One line."""
        return (f"{100 * self.fraction_inside:.1f}% of the attribution inside the tumour "
                f"(random maps {100 * self.baseline_mean:.1f}% "
                f"[{100 * self.baseline_ci_low:.1f}-{100 * self.baseline_ci_high:.1f}]; "
                f"enrichment {self.enrichment:.2f}x, p={self.p_value:.3g})")


def attribution_overlap(attribution: np.ndarray, mask: np.ndarray, brain: np.ndarray, *,
                        coarse_shape: Sequence[int], n_random: int = 200,
                        seed: int = 0) -> AttributionOverlap:
    """Share of the attribution inside ``mask`` against random smooth maps.

    Parameters
    ----------
    attribution : ndarray, shape (D, H, W), >= 0
    mask, brain : ndarray of bool, shape (D, H, W)
        Tumour and brain on the same grid (the tumour is counted inside the brain).
    coarse_shape : 3 ints
        Native resolution of the attribution (random maps get the same smoothness).
    n_random : int
    seed : int

    Raises
    ------
    ExplainError
        Empty brain or empty tumour mask, or an all-zero attribution.
    """
    attribution = np.clip(np.asarray(attribution, dtype=np.float64), 0.0, None)
    brain = np.asarray(brain, bool)
    inside = np.asarray(mask, bool) & brain
    if not brain.any() or not inside.any():
        raise ExplainError("the tumour mask does not overlap the brain on the encoder's input "
                           "grid; check that the mask is aligned with the patient's scans")
    total = float(attribution[brain].sum())
    if total <= 0:
        raise ExplainError("the attribution map is zero everywhere in the brain (the explained "
                           "class gets no positive evidence); try --target positive/negative")
    fraction = float(attribution[inside].sum() / total)
    # Upsampling is linear, so sum(up(noise) * m) = noise . U^T m: the adjoint weights of
    # the tumour and of the brain on the coarse grid are computed once (by autograd), and
    # each random map costs a dot product on the coarse grid (exactly the same numbers
    # as upsampling every map to full size).
    coarse = tuple(max(1, int(c)) for c in coarse_shape)
    weights = []
    for region in (inside, brain):
        x = torch.zeros((1, 1, *coarse), dtype=torch.float64, requires_grad=True)
        up = torch.nn.functional.interpolate(x, size=tuple(brain.shape), mode="trilinear",
                                             align_corners=False)
        (up[0, 0] * torch.from_numpy(region.astype(np.float64))).sum().backward()
        weights.append(x.grad.reshape(-1))
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.rand((n_random, int(np.prod(coarse))), generator=generator).double()
    baseline = ((noise @ weights[0]) / (noise @ weights[1])).numpy()
    low, high = np.percentile(baseline, [2.5, 97.5])
    mean = float(baseline.mean())
    return AttributionOverlap(
        fraction_inside=fraction, baseline_mean=mean, baseline_ci_low=float(low),
        baseline_ci_high=float(high), enrichment=fraction / mean if mean > 0 else float("nan"),
        p_value=float((1 + (baseline >= fraction).sum()) / (1 + baseline.size)),
        n_random=int(baseline.size), mask_voxels=int(inside.sum()),
        brain_voxels=int(brain.sum()))


@dataclass(frozen=True, eq=False)
class PreparedInput:
    """One patient's encoder input and the affine of its grid.

    Attributes
    ----------
    image : torch.Tensor, shape (1, C, D, H, W)
    affine : ndarray, shape (4, 4)
        Voxel -> world of the encoder's input grid.
    brain : ndarray of bool, shape (D, H, W)
        Voxels that are non-zero in any channel.
    """

    image: torch.Tensor
    affine: np.ndarray
    brain: np.ndarray


def prepare_input(record: Mapping[str, Any], config: Any) -> PreparedInput:
    """Preprocess one patient exactly as extraction does, keeping the grid's affine.

    Parameters
    ----------
    record : mapping
        ``{"patient_id", <sequence>: path, ...}`` (as
        :func:`neurofeat.extract.dataset.load_patient_records` returns).
    config : PreprocessConfig
        The backbone's preprocessing.
    """
    from neurofeat.extract.preprocess import build_transforms

    out = build_transforms(config, track_meta=True)(dict(record))
    image = out["image"]
    affine = np.asarray(image.affine.detach().cpu().numpy() if hasattr(image, "affine")
                        else np.eye(4), dtype=np.float64)
    tensor = torch.as_tensor(image).as_subclass(torch.Tensor).float()[None]
    brain = (tensor[0] != 0).any(dim=0).numpy()
    return PreparedInput(image=tensor, affine=affine, brain=brain)


@dataclass(frozen=True, eq=False)
class ExplainResult:
    """One attribution map of one patient.

    Attributes
    ----------
    method : {'gradcam', 'occlusion'}
    layer : str
        Grad-CAM layer ('' for occlusion).
    target_class : {'positive', 'negative'}
    probability : float
        The probe's probability of the positive class for this patient.
    heatmap : ndarray, shape (D, H, W)
        On the encoder's input grid, scaled to max 1.
    native_shape : tuple of int
        The map's true resolution (feature map, or occlusion boxes per axis).
    overlap : AttributionOverlap or None
    seconds : float
    params : dict
    """

    method: str
    layer: str
    target_class: str
    probability: float
    heatmap: np.ndarray
    native_shape: tuple[int, ...]
    overlap: AttributionOverlap | None
    seconds: float
    params: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One or two lines."""
        head = (f"{self.method}{f' at {self.layer}' if self.layer else ''}: explains the "
                f"{self.target_class} class (p = {self.probability:.3f})")
        return head + (f"\n  {self.overlap.summary()}" if self.overlap else "")


def explain_image(model: ProbeHead, prepared: PreparedInput, *, method: str = "gradcam",
                  target: str = "predicted", layer: str | None = None,
                  mask: np.ndarray | None = None, occlusion_mask_size: int | None = None,
                  occlusion_overlap: float = 0.0, n_random: int = 200,
                  seed: int = 0, forward: ProbeForward | None = None) -> ExplainResult:
    """Attribution of one prepared input, and its concentration in a tumour mask.

    Parameters
    ----------
    model : ProbeHead
    prepared : PreparedInput
    method : {'gradcam', 'occlusion'}
    target : {'predicted', 'positive', 'negative'}
    layer : str, optional
        Grad-CAM layer (default: last stage).
    mask : ndarray of bool, shape (D, H, W), optional
        Tumour on the encoder's input grid.
    occlusion_mask_size : int, optional
        Occluded box side (default: a quarter of the smallest input side).
    occlusion_overlap : float
    n_random, seed : random-map baseline.
    forward : ProbeForward, optional
        :func:`probe_forward` of this input, when already computed (saves a forward
        pass of the encoder: minutes for a ResNet50 at 128^3 on CPU).

    Raises
    ------
    ExplainError
        Unknown method or target, bad layer, mask/brain problems.
    """
    if method not in METHODS:
        raise ExplainError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    start = time.perf_counter()
    if target not in TARGETS:
        raise ExplainError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    forward = forward or probe_forward(model, prepared.image)
    probability = forward.probability
    index = int(probability >= 0.5) if target == "predicted" else int(target == "positive")
    spatial = tuple(int(s) for s in prepared.image.shape[2:])
    params: dict[str, Any] = {"target": target}
    if method == "gradcam":
        # the shared forward already gave the stage shapes: no second pass to pick the layer
        chosen = layer or pick_layer(forward.stage_shapes) or find_target_layer(model)
        heat, native, name = gradcam_map(model, prepared.image, layer=chosen, class_index=index)
    else:
        size = int(occlusion_mask_size or max(2, min(spatial) // 4))
        box = _bounding_box(prepared.brain)
        heat = occlusion_map(model, prepared.image, mask_size=size, class_index=index,
                             overlap=occlusion_overlap, bounding_box=box)
        stride = max(1, int(round(size * (1 - occlusion_overlap))))
        native = tuple(int(np.ceil(s / stride)) for s in spatial)
        name = ""
        params.update(mask_size=size, overlap=occlusion_overlap, bounding_box=box,
                      occlusion_mode="gaussian")
    top = float(heat.max())
    heat = heat / top if top > 0 else heat
    overlap = None
    if mask is not None:
        overlap = attribution_overlap(heat, mask, prepared.brain, coarse_shape=native,
                                      n_random=n_random, seed=seed)
    return ExplainResult(method=method, layer=name,
                         target_class="positive" if index == 1 else "negative",
                         probability=probability, heatmap=heat.astype(np.float32),
                         native_shape=tuple(native), overlap=overlap,
                         seconds=time.perf_counter() - start, params=params)


def _bounding_box(brain: np.ndarray) -> list[int] | None:
    """[start0, last0, start1, last1, start2, last2] of the brain (inclusive), or None."""
    from neurofeat.extract.preprocess import foreground_box

    found = foreground_box(np.asarray(brain, np.float32)[None])
    if found is None:
        return None
    return [v for low, end in zip(*found) for v in (low, end - 1)]
