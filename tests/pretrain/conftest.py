"""Shared tiny fixtures for the pretraining tests (resnet10, widen 0.25, 32^3)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from neurofeat.extract.encoders import EncoderConfig  # noqa: E402

TINY = EncoderConfig(arch="resnet10", widen_factor=0.25, input_size=32, spacing=(2.0, 2.0, 2.0))

# Small heads so that a step takes milliseconds on 2 CPU cores.
SMALL_HEADS = {
    "simclr": {"proj_hidden_dim": 64, "proj_dim": 32},
    "moco": {"proj_hidden_dim": 64, "proj_dim": 32},
    "byol": {"proj_hidden_dim": 64, "proj_dim": 32},
    "dino": {"out_dim": 128, "hidden_dim": 64, "bottleneck_dim": 32, "n_local": 2},
    "mae": {"decoder_dim": 32},
}


class FakePreprocess:
    """Stands in for the NIfTI pipeline: a fixed random volume per patient (site A brighter)."""

    def __call__(self, record):
        number = int("".join(ch for ch in record["patient_id"] if ch.isdigit()))
        generator = torch.Generator().manual_seed(number)
        image = torch.randn(4, 32, 32, 32, generator=generator)
        if record.get("site") == "A":
            image = image + 1.0
        return {"image": image}


def tiny_records(n: int = 8, n_site_a: int = 3):
    return [
        {"patient_id": f"P{i:02d}", "site": "A" if i < n_site_a else "B",
         "t1": None, "t1ce": None, "t2": None, "flair": None}
        for i in range(n)
    ]


@pytest.fixture
def tiny_config():
    """The tiny encoder configuration."""
    return TINY


@pytest.fixture
def small_heads():
    """Per-method small head sizes."""
    return {k: dict(v) for k, v in SMALL_HEADS.items()}


@pytest.fixture
def fake_preprocess():
    """Record -> {"image": (4, 32, 32, 32)} without files."""
    return FakePreprocess()


@pytest.fixture
def make_records():
    """Factory of tiny per-patient records (sites A and B)."""
    return tiny_records


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny 3D convolutions run faster on one thread, especially on a shared 2-core box."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
