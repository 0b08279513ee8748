"""What a store holds: counts per backbone and site, dimensions, checkpoints, size."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from neurofeat.store.catalog import connect
from neurofeat.store.embeddings import backbone_provenance
from neurofeat.store.layout import Store

__all__ = ["StoreInfo", "store_info"]


@dataclass(frozen=True)
class StoreInfo:
    """Summary of a store (``neurofeat store info``).

    Attributes
    ----------
    root : str
    n_patients, n_scans, n_runs : int
    patients_per_site : DataFrame (site, n_patients, n_with_scans)
    backbones : DataFrame (backbone, perturbation, site, n_patients, dim, checkpoint_sha256,
        preprocess_sha256)
    size_bytes : int
    """

    root: str
    n_patients: int
    n_scans: int
    n_runs: int
    patients_per_site: pd.DataFrame
    backbones: pd.DataFrame
    size_bytes: int

    def summary(self) -> str:
        lines = [
            f"store {self.root}: {self.n_patients} patients, {self.n_scans} scans, "
            f"{self.backbones['backbone'].nunique() if len(self.backbones) else 0} backbones, "
            f"{self.n_runs} analysis runs, {self.size_bytes / 1e6:.1f} MB on disk"
        ]
        if len(self.backbones):
            lines.append(self.backbones.to_string(index=False))
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        return self.backbones


def store_info(store: Store) -> StoreInfo:
    """Collect :class:`StoreInfo` for ``store``."""
    con = connect(store)
    n_patients = con.sql("SELECT count(*) FROM patients").fetchall()[0][0]
    n_scans = con.sql("SELECT count(*) FROM scans").fetchall()[0][0]
    per_site = con.sql(
        "SELECT site, count(*) AS n_patients, "
        "count(*) FILTER (WHERE patient_id IN (SELECT patient_id FROM scans)) AS n_with_scans "
        "FROM patients GROUP BY site ORDER BY site"
    ).df()
    counts = con.sql(
        "SELECT backbone, perturbation, site, count(*) AS n_patients FROM embeddings "
        "GROUP BY ALL ORDER BY ALL"
    ).df()
    rows = []
    for backbone in store.backbones():
        provenance = backbone_provenance(store, backbone)
        first = provenance[0]
        rows.append(
            {
                "backbone": backbone,
                "dim": int(first.get("dim", 0)),
                "checkpoint_sha256": ",".join(sorted({p.get("checkpoint_sha256", "?") for p in provenance})),
                "preprocess_sha256": ",".join(sorted({p.get("preprocess_sha256", "?") for p in provenance})),
            }
        )
    meta = pd.DataFrame(rows, columns=["backbone", "dim", "checkpoint_sha256", "preprocess_sha256"])
    backbones = counts.merge(meta, on="backbone", how="left") if len(counts) else counts.assign(
        dim=pd.Series(dtype=int), checkpoint_sha256=pd.Series(dtype=str), preprocess_sha256=pd.Series(dtype=str)
    )
    size = sum(p.stat().st_size for p in store.root.rglob("*") if p.is_file())
    n_runs = sum(1 for p in store.runs_dir.glob("*/run.json")) if store.runs_dir.is_dir() else 0
    return StoreInfo(
        root=str(store.root),
        n_patients=int(n_patients),
        n_scans=int(n_scans),
        n_runs=n_runs,
        patients_per_site=per_site,
        backbones=backbones,
        size_bytes=size,
    )
