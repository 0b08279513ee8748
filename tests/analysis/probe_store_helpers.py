"""A small store with clinical labels and embeddings of 4 + 4 backbones (no images).

Used by the CLI tests of `neurofeat probe` and `neurofeat stats compare`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from neurofeat.store import Store, append_embeddings, write_tables

BACKBONES = ("byol", "dino", "mae", "moco", "byol_dro", "dino_dro", "mae_dro", "moco_dro")
SITES = ("CUIMC", "UCSF", "UPenn")


def make_probe_store(root, n: int = 90, dim: int = 24, seed: int = 0,
                     backbones=BACKBONES, skip: dict | None = None) -> Store:
    """Store with n patients at 3 sites, idh1/mgmt/ki67/cdkn2a labels and embeddings.

    ``idh1`` depends on a latent factor every backbone sees (DRO twins with less noise);
    ``cdkn2a`` has only 3 positives (too few for 5-fold CV); ``skip`` maps a backbone to
    patient indices left without an embedding.
    """
    rng = np.random.default_rng(seed)
    store = Store.open(root, create=True)
    ids = [f"P{i:03d}" for i in range(n)]
    sites = np.array(SITES)[np.arange(n) % 3]
    latent = rng.normal(size=(n, 4))
    idh1 = latent[:, 0] + 0.5 * rng.normal(size=n) > 0.2
    mgmt = rng.random(n) < 0.5
    cdkn2a = np.zeros(n, bool)
    cdkn2a[[1, 2, 3]] = True
    ki67 = np.clip(10 + 6 * latent[:, 1] + rng.normal(size=n), 0, 100)
    write_tables(store, {
        "patients": pa.table({"patient_id": ids, "site": sites,
                              "grade": np.full(n, 4, np.int16)}),
        "clinical": pa.table({"patient_id": ids, "idh1": idh1, "mgmt": mgmt,
                              "cdkn2a": cdkn2a, "ki67": ki67,
                              "os_days": rng.random(n) * 1000 + 30,
                              "os_event": rng.random(n) < 0.7}),
    })
    skip = skip or {}
    for b, name in enumerate(backbones):
        brng = np.random.default_rng(100 + b)
        noise = 0.8 if name.endswith("_dro") else 1.2
        X = latent @ brng.normal(size=(4, dim)) + noise * brng.normal(size=(n, dim))
        keep = np.setdiff1d(np.arange(n), skip.get(name, []))
        append_embeddings(store, name, [ids[i] for i in keep], X[keep].astype(np.float32),
                          checkpoint_sha256=f"{b:064x}", preprocess_sha256="ab" * 32)
    return store
