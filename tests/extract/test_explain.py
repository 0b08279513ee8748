"""Grad-CAM and occlusion through encoder + probe head (extract/explain.py).

The tiny trained model: a MONAI resnet10 (widen 0.25, 32^3, conv1 stride 2) with a
linear head, trained for a few steps on synthetic volumes where the label is whether
the tumour enhances on T1ce; only the tumour carries the label, so a sound attribution
concentrates there.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from neurofeat.extract.encoders import EncoderConfig, build_encoder
from neurofeat.extract.explain import (ExplainError, PreparedInput, ProbeHead,
                                       attribution_overlap, auto_layer, explain_image,
                                       find_target_layer, prepare_input, random_smooth_maps,
                                       resample_to_grid)

SIZE = 32
GRID = np.stack(np.meshgrid(*[np.arange(SIZE)] * 3, indexing="ij")).astype(np.float32)


def volume(rng, positive: bool):
    """Four channels: brain noise; FLAIR-bright tumour; T1ce-bright when positive."""
    brain = (((GRID - 15.5) / np.array([13, 14, 12])[:, None, None, None]) ** 2).sum(0) <= 1
    centre = rng.uniform([10, 10, 10], [22, 22, 20])
    radius = rng.uniform(3.5, 5.5)
    tumour = ((GRID - centre[:, None, None, None]) ** 2).sum(0) <= radius ** 2
    x = np.zeros((4, SIZE, SIZE, SIZE), np.float32)
    for k in range(4):
        x[k][brain] = rng.normal(0, 1, brain.sum())
    x[3][tumour] += 2.0
    if positive:
        x[1][tumour] += 2.5
    return x * brain, tumour & brain, brain


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two spin-waiting threads made a
    training step 7x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = [volume(rng, i % 2 == 1) for i in range(32)]
    X = torch.tensor(np.stack([d[0] for d in data]))
    y = torch.tensor([i % 2 for i in range(32)], dtype=torch.float32)
    cfg = EncoderConfig(arch="resnet10", widen_factor=0.25, input_size=SIZE,
                        spacing=(2.0, 2.0, 2.0))
    encoder, head = build_encoder(cfg), torch.nn.Linear(build_encoder(cfg).embedding_dim, 1)
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(40):
        idx = torch.randint(0, 32, (8,))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            head(encoder(X[idx]))[:, 0], y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    encoder.eval()
    with torch.no_grad():
        accuracy = float(((head(encoder(X))[:, 0] > 0).float() == y).float().mean())
    model = ProbeHead(encoder, head.weight.detach().numpy()[0], float(head.bias.detach()))
    test = [volume(np.random.default_rng(100 + i), True) for i in range(2)]
    return {"model": model, "accuracy": accuracy, "test": test}


def _prepared(x, brain):
    return PreparedInput(image=torch.tensor(x)[None], affine=np.eye(4), brain=brain)


def test_the_tiny_model_learned_the_task(trained):
    assert trained["accuracy"] >= 0.9


def test_probe_head_gives_the_probe_probability(trained):
    model = trained["model"]
    x = torch.tensor(trained["test"][0][0])[None]
    with torch.no_grad():
        z = float(model.head(model.encoder(x))[0, 0])
    assert model.probability(x) == pytest.approx(1 / (1 + np.exp(-z)), rel=1e-5)


@pytest.mark.parametrize(("method", "kwargs"), [
    ("gradcam", {"layer": "layer1"}),
    ("occlusion", {"occlusion_mask_size": 8}),
])
def test_attribution_concentrates_in_the_tumour_more_than_a_random_map(trained, method, kwargs):
    for x, tumour, brain in trained["test"]:
        result = explain_image(trained["model"], _prepared(x, brain), method=method,
                               mask=tumour, n_random=100, **kwargs)
        overlap = result.overlap
        assert result.target_class == "positive" and result.probability > 0.5
        assert overlap.fraction_inside > overlap.baseline_ci_high
        assert overlap.enrichment > 1.5 and overlap.p_value < 0.05
        assert result.heatmap.shape == (SIZE,) * 3 and result.heatmap.max() == pytest.approx(1)


def test_a_random_map_is_not_concentrated():
    rng = np.random.default_rng(5)
    _, tumour, brain = volume(rng, True)
    noise = random_smooth_maps((SIZE,) * 3, (8, 8, 8), 1, seed=999)[0].numpy()
    overlap = attribution_overlap(noise, tumour, brain, coarse_shape=(8, 8, 8), n_random=100)
    assert overlap.baseline_ci_low <= overlap.fraction_inside <= overlap.baseline_ci_high
    assert overlap.p_value > 0.05


def test_default_layer_keeps_a_usable_resolution(trained):
    model = trained["model"]
    x = torch.tensor(trained["test"][0][0])[None]
    assert auto_layer(model, x) == "encoder.layer2"          # 4^3 at 32^3 input
    assert find_target_layer(model) == "encoder.layer4"
    assert find_target_layer(model, "layer3") == "encoder.layer3"
    with pytest.raises(ExplainError, match="no layer 'layer9'"):
        find_target_layer(model, "layer9")


def test_bad_method_and_target(trained):
    x, tumour, brain = trained["test"][0]
    with pytest.raises(ExplainError, match="method must be one of gradcam, occlusion"):
        explain_image(trained["model"], _prepared(x, brain), method="lime")
    with pytest.raises(ExplainError, match="target must be one of"):
        explain_image(trained["model"], _prepared(x, brain), target="maybe")


def test_heatmap_maps_back_onto_the_patient_grid(tmp_path):
    """A map equal to the preprocessed T1ce, resampled back, matches the T1ce on disk."""
    from neurofeat.extract.preprocess import PreprocessConfig

    rng = np.random.default_rng(0)
    shape = (40, 44, 30)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    brain = (grid ** 2).sum(0) <= 0.8
    blob = ((grid - np.array([0.3, -0.2, 0.1])[:, None, None, None]) ** 2).sum(0) <= 0.05
    affine = np.array([[0, -1.2, 0, 30], [1.0, 0, 0, -20], [0, 0, 1.5, -5], [0, 0, 0, 1]])
    record = {"patient_id": "P1"}
    for k, seq in enumerate(("t1", "t1ce", "t2", "flair")):
        vol = (brain * (100 + 10 * k + rng.normal(0, 3, shape))).astype(np.float32)
        if seq == "t1ce":
            vol[blob] += 300
        path = tmp_path / f"{seq}.nii.gz"
        nib.save(nib.Nifti1Image(vol, affine), str(path))
        record[seq] = str(path)
    prepared = prepare_input(record, PreprocessConfig(spacing=(2.0, 2.0, 2.0), input_size=24))
    heat = prepared.image[0, 1].numpy() > 2.0                    # the blob, preprocessed
    back = resample_to_grid(heat.astype(np.float32), prepared.affine, affine, shape) > 0.5
    dice = 2 * (back & blob).sum() / (back.sum() + blob.sum())
    assert dice > 0.7


def test_baseline_equals_materialised_random_maps():
    """The coarse-grid shortcut gives the numbers of upsampling every random map."""
    rng = np.random.default_rng(6)
    _, tumour, brain = volume(rng, True)
    heat = rng.random((SIZE,) * 3)
    overlap = attribution_overlap(heat, tumour, brain, coarse_shape=(4, 4, 4), n_random=25,
                                  seed=3)
    maps = random_smooth_maps((SIZE,) * 3, (4, 4, 4), 25, seed=3).double().numpy()
    inside = tumour & brain
    explicit = (maps * inside).reshape(25, -1).sum(1) / (maps * brain).reshape(25, -1).sum(1)
    assert overlap.baseline_mean == pytest.approx(explicit.mean(), rel=1e-6)
    assert overlap.fraction_inside == pytest.approx(heat[inside].sum() / heat[brain].sum())
