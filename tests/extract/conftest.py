"""Fixtures of the extraction tests (helpers live in extract_helpers.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("nibabel")

from extract_helpers import make_backbone, make_store  # noqa: E402


@pytest.fixture()
def cohort(tmp_path):
    store, ids = make_store(tmp_path, n=6)
    models = tmp_path / "models"
    make_backbone(models, "tiny")
    return {"store": store, "ids": ids, "models": models, "root": tmp_path}
