"""Analysis inputs read from the store: aligned embeddings, site filters, survival data.

Every run function gets its arrays here, so that a task's patients, a ``--site`` filter
and the checks on embeddings (finite values, the same patients for every backbone) are
applied one way for every command.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neurofeat.analysis.survival import check_min_patients, check_survival_data
from neurofeat.store import Store, TaskData, connect, read_xy
from neurofeat.suggest import did_you_mean
from neurofeat.tasks import Task

__all__ = [
    "PatientSetMismatch",
    "AlignedData",
    "load_aligned",
    "check_finite",
    "site_mask",
    "restrict_sites",
    "check_backbone",
    "load_survival_data",
    "clinical_column",
]


class PatientSetMismatch(ValueError):
    """Backbones to compare cover different patients."""


@dataclass(frozen=True, eq=False)
class AlignedData:
    """Embeddings of several backbones on the same patients (rows sorted by patient_id).

    Attributes
    ----------
    task : Task
    patient_ids, sites : ndarray of str, shape (n,)
    y : ndarray, shape (n,)
        Label (binary/continuous) or survival time.
    event : ndarray of bool, shape (n,) or None
        Survival tasks only.
    X : dict backbone -> ndarray (n, d)
    provenance : dict backbone -> (checkpoint_sha256, preprocess_sha256)
    dropped : dict backbone -> int
        Patients of that backbone left out by ``intersect``.
    """

    task: Task
    patient_ids: np.ndarray
    sites: np.ndarray
    y: np.ndarray
    event: np.ndarray | None
    X: dict[str, np.ndarray]
    provenance: dict[str, tuple[str | None, str | None]]
    dropped: dict[str, int] = field(default_factory=dict)

    def subset(self, keep: np.ndarray) -> "AlignedData":
        """The same data restricted to the rows where ``keep`` is true."""
        return dataclasses.replace(
            self, X={b: x[keep] for b, x in self.X.items()}, patient_ids=self.patient_ids[keep],
            sites=self.sites[keep], y=self.y[keep],
            event=None if self.event is None else self.event[keep])


def check_backbone(store: Store, backbone: str) -> None:
    """Refuse a backbone the store does not hold, suggesting the closest name."""
    known = store.backbones()
    if backbone not in known:
        raise ValueError(f"unknown backbone '{backbone}'.{did_you_mean(backbone, known)} "
                         f"Backbones in the store: {', '.join(known) or 'none'}")


def check_finite(X: np.ndarray, patient_ids: np.ndarray, backbone: str) -> None:
    """Refuse embeddings with NaN/inf, naming the patients."""
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        ids = patient_ids[bad]
        raise ValueError(f"backbone '{backbone}': {int(bad.sum())} embedding(s) contain NaN or "
                         f"inf (patients {', '.join(ids[:5])}{'...' if ids.size > 5 else ''}); "
                         "re-extract them with --replace, or drop them from the store")


def site_mask(sites: np.ndarray, site_filter: str | None, task_name: str) -> np.ndarray:
    """Row mask for ``--site`` (comma-separated site names; None = every site).

    Raises
    ------
    ValueError
        A named site has no patient of the task; the message lists the sites.
    """
    if not site_filter:
        return np.ones(len(sites), bool)
    wanted = [x.strip() for x in site_filter.split(",") if x.strip()]
    known = sorted(set(np.asarray(sites).tolist()))
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"site(s) {unknown} have no patient of task '{task_name}'."
                         f"{did_you_mean(unknown[0], known)} Sites: {', '.join(known)}.")
    return np.isin(sites, wanted)


def restrict_sites(data: TaskData, site_filter: str | None) -> TaskData:
    """``data`` restricted to the sites of ``site_filter`` (see :func:`site_mask`)."""
    keep = site_mask(data.sites, site_filter, data.task.name)
    if keep.all():
        return data
    return dataclasses.replace(
        data, X=data.X[keep], y=data.y[keep], patient_ids=data.patient_ids[keep],
        sites=data.sites[keep], event=None if data.event is None else data.event[keep])


def load_aligned(store: Store, backbones: Sequence[str], task: Task, *, intersect: bool = False,
                 perturbation: str = "none") -> AlignedData:
    """Read every backbone for ``task`` and align them on patients.

    Raises
    ------
    PatientSetMismatch
        When the backbones cover different patients and ``intersect`` is False; says
        how many patients each side lacks (with examples) and suggests ``--intersect``.
    """
    datas = {b: read_xy(store, b, task, perturbation=perturbation) for b in backbones}
    first = datas[backbones[0]]
    common = set(first.patient_ids)
    for data in datas.values():
        common &= set(data.patient_ids)
    mismatched = [b for b, d in datas.items() if len(d.patient_ids) != len(common)]
    if mismatched and not intersect:
        parts = []
        union = set().union(*(set(d.patient_ids) for d in datas.values()))
        for b, d in datas.items():
            missing = sorted(union - set(d.patient_ids))
            if missing:
                parts.append(f"{b} lacks {len(missing)} (e.g. {', '.join(missing[:3])})")
        complete = [b for b, d in datas.items() if len(d.patient_ids) == len(union)]
        if complete:
            parts.append(f"{', '.join(complete)} lack{'s' if len(complete) == 1 else ''} none")
        raise PatientSetMismatch(
            f"the backbones cover different patients of task '{task.name}': "
            + "; ".join(parts) + f". Extract the missing patients, or rerun with --intersect "
            f"to compare on the {len(common)} patients all of them have.")
    keep = np.array(sorted(common))
    if keep.size == 0:
        raise ValueError(f"no labelled patient of task '{task.name}' has embeddings "
                         f"for all of {', '.join(backbones)}")
    X, dropped = {}, {}
    for b, d in datas.items():
        pos = pd.Index(d.patient_ids).get_indexer(keep)
        X[b] = d.X[pos]
        check_finite(X[b], keep, b)
        dropped[b] = int(len(d.patient_ids) - keep.size)
    pos = pd.Index(first.patient_ids).get_indexer(keep)
    return AlignedData(
        task=task, patient_ids=keep, sites=first.sites[pos], y=first.y[pos],
        event=None if first.event is None else first.event[pos], X=X,
        provenance={b: (d.checkpoint_sha256, d.preprocess_sha256) for b, d in datas.items()},
        dropped=dropped)


def load_survival_data(store: Store, backbone: str, task: Task, *, site: str | None = None,
                       min_patients: int = 20) -> TaskData:
    """X, time and event of a survival task (optionally one site), validated.

    Raises
    ------
    ValueError
        Not a survival task, unknown site, too few patients, bad times (the survival
        checks raise :class:`~neurofeat.analysis.survival.SurvivalDataError`).
    """
    if task.kind != "survival":
        raise ValueError(f"task '{task.name}' is a {task.kind} task; `neurofeat survival` "
                         "needs a survival task such as 'os' (see `neurofeat tasks`)")
    check_backbone(store, backbone)
    data = read_xy(store, backbone, task)
    if site is not None:
        known = sorted(set(data.sites.tolist()))
        if site not in known:
            raise ValueError(f"site '{site}' has no patients in task '{task.name}' for "
                             f"backbone '{backbone}'.{did_you_mean(site, known)} Sites: "
                             f"{', '.join(known) or 'none'}")
        data = restrict_sites(data, site)
    what = (f"task '{task.name}' (cohort: {task.cohort or 'everyone'})"
            + (f" at site {site}" if site else "") + f" with backbone '{backbone}'")
    check_min_patients(data.n, min_patients=min_patients, what=what)
    check_survival_data(data.y, np.asarray(data.event, bool), patient_ids=data.patient_ids,
                        what=what)
    return data


def clinical_column(store: Store, column: str, patient_ids: np.ndarray) -> np.ndarray:
    """Values of a ``clinical``-view column for the given patients (None where unknown).

    Raises
    ------
    ValueError
        ``column`` is not a column of the clinical view (the closest one is suggested).
    """
    con = connect(store)
    try:
        columns = [row[0] for row in con.sql("DESCRIBE clinical").fetchall()]
        if column not in columns:
            raise ValueError(f"'{column}' is not a column of the clinical view."
                             f"{did_you_mean(column, columns)} Columns: {', '.join(columns)}")
        frame = con.execute(f'SELECT patient_id, "{column}" AS value FROM clinical').df()
    finally:
        con.close()
    return pd.Series(frame["value"].to_numpy(), index=frame["patient_id"].astype(str)) \
        .reindex(pd.Index(patient_ids)).to_numpy()
