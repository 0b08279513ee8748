"""SSL methods: per-sample losses of the batch's length that decrease when trained."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofeat.extract.augment import AugmentConfig, MultiViewAugment  # noqa: E402
from neurofeat.extract.encoders import build_encoder  # noqa: E402
from neurofeat.extract.methods import METHOD_NAMES, build_method  # noqa: E402
from neurofeat.extract.methods.mae import patchify, random_patch_mask  # noqa: E402
from neurofeat.extract.methods.simclr import nt_xent_per_sample  # noqa: E402

pytestmark = pytest.mark.torch


def _views(method, images, epoch=0):
    augment = MultiViewAugment(method.view_specs(32), AugmentConfig.none())
    per_sample = [augment(images[i], seed=1, epoch=epoch, index=i) for i in range(images.shape[0])]
    return [torch.stack([views[v] for views in per_sample]) for v in range(len(per_sample[0]))]


def _train(method, batches, steps):
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(steps):
        torch.manual_seed(step)  # MAE masks
        loss = method(batches[step % len(batches)])
        assert loss.shape == (batches[0][0].shape[0],)
        assert torch.isfinite(loss).all()
        loss.mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        method.after_step(step / steps)
        losses.append(loss.mean().item())
    return losses


@pytest.mark.parametrize("name", ["simclr", "byol", "mae", "moco_v3", "dino_fixed_centre"])
def test_loss_decreases_on_a_fixed_batch(name, tiny_config, small_heads):
    torch.manual_seed(0)
    params = dict(small_heads[name.split("_")[0]])
    if name == "moco_v3":
        params["queue_size"] = 0  # in-batch negatives; a queue of one batch's own keys is tested below
    if name == "dino_fixed_centre":
        # With a moving centre DINO's cross-entropy includes the teacher's rising entropy
        # (centring is what prevents collapse), so it need not fall; freeze it here and
        # test the centre update separately.
        params["center_momentum"] = 1.0
    method = build_method(name.split("_")[0], build_encoder(tiny_config), **params)
    views = _views(method, torch.randn(4, 4, 32, 32, 32))
    losses = _train(method, [views], steps=6)
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2]), losses


def test_moco_queue_loss_decreases_over_distinct_batches(tiny_config, small_heads):
    # 4 batches of 4 distinct patients; the queue (8) holds only the two previous
    # batches' keys, i.e. other patients, as in training with queue < n - batch.
    torch.manual_seed(0)
    method = build_method("moco", build_encoder(tiny_config), **small_heads["moco"], queue_size=8)
    images = torch.randn(16, 4, 32, 32, 32)
    batches = [_views(method, images[4 * b: 4 * b + 4]) for b in range(4)]
    losses = _train(method, batches, steps=12)
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4]), losses


def test_moco_queue_is_a_fifo_ring_buffer(tiny_config, small_heads):
    method = build_method("moco", build_encoder(tiny_config), **small_heads["moco"], queue_size=5)
    keys = torch.arange(3 * 32, dtype=torch.float32).view(3, 32)
    method._enqueue(keys)
    method._enqueue(keys + 1000)
    # slots 0-2 <- keys, 3-4 <- first two of keys+1000, then wrap: slot 0 <- third
    torch.testing.assert_close(method.queue[1:3], keys[1:3])
    torch.testing.assert_close(method.queue[3:5], keys[:2] + 1000)
    torch.testing.assert_close(method.queue[0], keys[2] + 1000)
    assert int(method.queue_ptr) == 1


def test_moco_key_encoder_follows_momentum(tiny_config, small_heads):
    method = build_method("moco", build_encoder(tiny_config), **small_heads["moco"], momentum=0.9)
    key_before = method.key_encoder.conv1.weight.clone()
    with torch.no_grad():
        method.encoder.conv1.weight.add_(1.0)
    method.after_step(0.0)
    expected = 0.9 * key_before + 0.1 * method.encoder.conv1.weight
    torch.testing.assert_close(method.key_encoder.conv1.weight, expected)


def _nt_xent_reference(z1, z2, tau):
    """NT-Xent written out from the SimCLR paper with numpy loops (independent reference)."""
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    losses = np.zeros(2 * n)
    for i in range(2 * n):
        j = i + n if i < n else i - n
        denominator = sum(math.exp(z[i] @ z[k] / tau) for k in range(2 * n) if k != i)
        losses[i] = -math.log(math.exp(z[i] @ z[j] / tau) / denominator)
    return 0.5 * (losses[:n] + losses[n:])


def test_nt_xent_matches_the_paper_formula():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    got = nt_xent_per_sample(torch.tensor(z1), torch.tensor(z2), 0.5).numpy()
    np.testing.assert_allclose(got, _nt_xent_reference(z1, z2, 0.5), rtol=1e-5)


def test_dino_centre_is_an_ema_of_teacher_outputs(tiny_config, small_heads):
    torch.manual_seed(0)
    method = build_method("dino", build_encoder(tiny_config), **small_heads["dino"], center_momentum=0.9)
    views = _views(method, torch.randn(4, 4, 32, 32, 32))
    with torch.no_grad():
        teacher = method.teacher_head(method.teacher_encoder(torch.cat(views[:2])))
    method(views)
    torch.testing.assert_close(method.center, 0.1 * teacher.mean(dim=0, keepdim=True), rtol=1e-4, atol=1e-6)


def test_dino_uses_global_and_local_crops(tiny_config, small_heads):
    method = build_method("dino", build_encoder(tiny_config), **small_heads["dino"])
    specs = method.view_specs(32)
    assert [(s.name, s.size, s.count) for s in specs] == [("global", 32, 2), ("local", 16, 2)]
    with pytest.raises(ValueError, match="expected 4 views"):
        method([torch.zeros(2, 4, 32, 32, 32)] * 2)


def test_mae_loss_counts_masked_patches_only(tiny_config, small_heads):
    torch.manual_seed(0)
    method = build_method("mae", build_encoder(tiny_config), **small_heads["mae"], patch_size=8)
    x = torch.randn(2, 4, 32, 32, 32)
    torch.manual_seed(5)
    mask = random_patch_mask(2, 64, 0.6)
    assert mask.sum(dim=1).tolist() == [38, 38]  # round(0.6 * 64)
    # Corrupting only visible voxels of the target leaves the loss unchanged when the
    # prediction does not depend on them: check with a decoder that outputs zeros.
    for module in (method.decoder_out,):
        torch.nn.init.zeros_(module.weight)
        torch.nn.init.zeros_(module.bias)
    torch.manual_seed(5)
    loss = method([x])
    target = patchify(x, 8)  # (2, 64, 4 * 8^3)
    expected = torch.stack([(target[b][mask[b]] ** 2).mean() for b in range(2)])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_build_method_errors(tiny_config):
    encoder = build_encoder(tiny_config)
    with pytest.raises(ValueError, match="unknown pretraining method 'swav'.*simclr"):
        build_method("swav", encoder)
    with pytest.raises(ValueError, match=r"byol: unknown hyper-parameter\(s\) \['queue_size'\]"):
        build_method("byol", encoder, queue_size=3)
    assert set(METHOD_NAMES) == {"simclr", "moco", "byol", "dino", "mae"}
