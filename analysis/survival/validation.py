"""Input checks for survival data: positive times, events present, enough patients.

Every check names the patient (or row) at fault, the bad value, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SurvivalDataError", "check_survival_data", "check_min_patients"]


class SurvivalDataError(ValueError):
    """Survival data that no survival statistic can be computed on (raised with a fix)."""


def _name(patient_ids: Sequence[str] | np.ndarray | None, i: int) -> str:
    if patient_ids is None:
        return f"row {i}"
    return f"patient {np.asarray(patient_ids)[i]!s}"


def check_min_patients(n: int, *, min_patients: int, what: str = "the cohort") -> None:
    """Raise if ``n < min_patients``.

    Raises
    ------
    SurvivalDataError
        Naming the count, the minimum and suggesting a wider cohort filter.
    """
    if n < min_patients:
        raise SurvivalDataError(
            f"{what} has {n} patients with survival data; at least {min_patients} are needed. "
            "Widen the task's cohort filter, include more sites, or lower --min-patients.")


def check_survival_data(
    time: np.ndarray,
    event: np.ndarray,
    *,
    patient_ids: Sequence[str] | np.ndarray | None = None,
    min_patients: int = 2,
    what: str = "the cohort",
    require_events: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate survival times and event indicators.

    Parameters
    ----------
    time : array-like of float, shape (n,)
        Follow-up time (event or censoring); must be finite and > 0.
    event : array-like of bool, shape (n,)
        True = event (death) observed, False = censored.
    patient_ids : array-like of str, shape (n,), optional
        Used to name the patient at fault.
    min_patients : int
        Smallest acceptable number of patients.
    what : str
        How to call the data in messages ("the cohort", "site UCSF", ...).
    require_events : bool
        Refuse data without any event.

    Returns
    -------
    time : ndarray of float64, shape (n,)
    event : ndarray of bool, shape (n,)

    Raises
    ------
    SurvivalDataError
        Lengths differ, a time is missing/non-finite/<= 0, an event flag is not 0/1,
        fewer than ``min_patients`` patients, no events, or all times tied.
    """
    time = np.asarray(time, dtype=np.float64).reshape(-1)
    event_raw = np.asarray(event)
    if event_raw.shape[0] != time.shape[0]:
        raise SurvivalDataError(
            f"time has {time.shape[0]} values but event has {event_raw.shape[0]}; "
            "pass one time and one event flag per patient")
    if event_raw.dtype != bool:
        as_float = event_raw.astype(np.float64)
        bad = np.flatnonzero(~np.isin(as_float, (0.0, 1.0)))
        if bad.size:
            i = int(bad[0])
            raise SurvivalDataError(
                f"{_name(patient_ids, i)}: event is {event_raw[i]!r}; "
                "use 1/true for death, 0/false for censored")
        event_raw = as_float.astype(bool)
    event = event_raw.reshape(-1)
    bad = np.flatnonzero(~np.isfinite(time))
    if bad.size:
        i = int(bad[0])
        raise SurvivalDataError(
            f"{_name(patient_ids, i)}: survival time is {time[i]}; every patient needs a "
            f"finite time ({bad.size} bad value(s)). Fill os_days or exclude the patient.")
    bad = np.flatnonzero(time <= 0)
    if bad.size:
        i = int(bad[0])
        raise SurvivalDataError(
            f"{_name(patient_ids, i)}: survival time is {time[i]:g}; times must be > 0 "
            f"({bad.size} patient(s) with time <= 0). Check os_days (days from diagnosis) "
            "or exclude these patients.")
    check_min_patients(time.size, min_patients=min_patients, what=what)
    if require_events and not event.any():
        raise SurvivalDataError(
            f"{what} has no events among {time.size} patients (all censored); a Cox model, "
            "c-index and log-rank test need at least one death. Use a larger cohort or "
            "fewer folds.")
    if time.size > 1 and np.unique(time).size == 1:
        raise SurvivalDataError(
            f"all {time.size} survival times in {what} are tied at {time[0]:g}; nothing "
            "can be ranked. Check that os_days holds per-patient follow-up times.")
    return time, event
