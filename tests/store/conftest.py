from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from neurofeat.store import Store, write_tables

N_PATIENTS = 60


def make_store(root, n: int = N_PATIENTS, seed: int = 0) -> Store:
    """A store with n registered patients at 3 sites and clinical labels (no images)."""
    rng = np.random.default_rng(seed)
    store = Store.open(root, create=True)
    ids = [f"P{i:03d}" for i in range(n)]
    sites = np.array(["siteA", "siteB", "siteC"])[rng.integers(0, 3, n)]
    idh1 = rng.random(n) < 0.3
    idh1_nullable = pa.array([None if i % 10 == 9 else bool(v) for i, v in enumerate(idh1)], pa.bool_())
    write_tables(
        store,
        {
            "patients": pa.table(
                {"patient_id": ids, "site": sites, "grade": rng.choice([2, 3, 4], n).astype(np.int16), "age": rng.normal(55, 12, n)}
            ),
            "clinical": pa.table(
                {
                    "patient_id": ids,
                    "idh1": idh1_nullable,
                    "ki67": rng.random(n) * 30,
                    "os_days": rng.random(n) * 1000 + 1,
                    "os_event": rng.random(n) < 0.7,
                }
            ),
        },
    )
    return store


@pytest.fixture
def store(tmp_path) -> Store:
    return make_store(tmp_path / "store")


@pytest.fixture
def ids() -> list[str]:
    return [f"P{i:03d}" for i in range(N_PATIENTS)]
