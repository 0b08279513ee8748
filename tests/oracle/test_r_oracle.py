"""Live R oracle: neurofeat's statistics against R (pROC, survival) on random inputs.

The reference tests elsewhere pin published values (pROC's aSAH, R's GBSG2, sksurv's
whas500). Here the inputs are random (seeded: every run sees the same ones) -- small and
moderate n, continuous, rounded and coarse (heavily tied) values, censoring. The module
writes them to one CSV per statistic family, runs a single ``Rscript``
(``tests/oracle/r/run_oracle.R``: every case of every family in one R process, since R
plus the survival package take seconds to start) and compares R's numbers with
neurofeat's at explicit tolerances. To rerun R by hand:
``Rscript --vanilla tests/oracle/r/run_oracle.R <dir> delong logrank survfit concordance``
on the ``<family>_in.csv`` files a run leaves in pytest's temporary directory.

Compared (R call in each test's docstring):

- pROC: ``auc``, ``var(method = "delong")``, ``cov``, ``ci.auc(method = "delong")``,
  ``roc.test(method = "delong", paired = TRUE)`` two- and one-sided;
- survival: ``survdiff`` (two to four groups), ``survfit`` (log, log-log and plain
  intervals, the median and its interval from ``summary(fit)$table``, the median from
  ``quantile(fit, 0.5)``), ``concordance`` (Harrell; Uno through ``timewt = "n/G2"``).

Needs ``Rscript`` with the survival and pROC packages (Debian: ``apt-get install
r-base-core r-cran-survival r-cran-proc``; ``.ci/run`` installs them). Without them
the module skips with one reason, unless ``NEUROFEAT_REQUIRE_R=1`` (set by ``.ci/run``
once it has installed R), which turns the skip into a failure.

Known differences are kept as a strict xfail on exactly the affected cases, not hidden
by a looser tolerance:

- log-log interval before the first event (S = 1): R gives NA, neurofeat [1, 1] (as
  scikit-survival and lifelines).

Differences this module found, now fixed in neurofeat. They stay as ordinary tests on
the cases that exposed them:

- Uno's C: neurofeat used scikit-survival's ``concordance_index_ipcw``, which weights an
  event at ``T_i`` by ``1 / G(T_i)^2``. R's ``concordance(timewt = "n/G2")`` uses the
  left limit ``1 / G(T_i-)^2``, and so does neurofeat now. The two differ where an
  event and a censoring share a time (``UNO_TIED``; scikit-survival issue #428).
  :func:`test_uno_written_out_with_g_left_limit_is_r_and_with_g_is_sksurv` pins the cause.
- Kaplan-Meier median: where S sits exactly on 0.5 and the next observed time is a
  censoring, neurofeat took the midpoint to that censoring. R takes the midpoint to the
  next drop of S, and so does neurofeat now (``KM_MEDIAN_RULES_DIFFER``).

R has two rules for a median that S reaches exactly at t_k and never leaves
(``KM_MEDIAN_NEVER_DROPS``). ``summary(fit)$table``, which ``print(fit)`` shows, gives
t_k. ``quantile(fit, 0.5)`` gives the midpoint of t_k and the last follow-up time.
neurofeat follows the table: it is the number R users see and report, and t_k is the
standard inf{t: S(t) <= 0.5}. The quantile's midpoint depends on how long the last
censored patient happened to be followed. Both rules are pinned in
:func:`test_kaplan_meier_median_on_a_flat_half_follows_the_written_rules`.

Not compared: R's variance of the concordance (``concordance()$var``, an infinitesimal
jackknife) -- neurofeat has no analytic variance of C (its intervals are bootstraps).
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from neurofeat.analysis.delong import delong_auc, delong_covariance, delong_test
from neurofeat.analysis.survival import harrell_c, kaplan_meier, logrank_test, uno_c

pytestmark = pytest.mark.r_oracle

R_DIR = Path(__file__).resolve().parent / "r"
R_PACKAGES = ("survival", "pROC")
REQUIRE_R_ENV = "NEUROFEAT_REQUIRE_R"
R_TIMEOUT_S = 120

N_DELONG_CASES = 18
N_LOGRANK_CASES = 18
N_KM_CASES = 36
N_CONCORDANCE_CASES = 24


# --- R availability -------------------------------------------------------------------

@functools.cache
def _r_unavailable() -> str | None:
    """Why the R oracle cannot run here (None when Rscript and the packages are present)."""
    install = ("install R and the packages with `apt-get install r-base-core r-cran-survival "
               "r-cran-proc` (as .ci/run does)")
    if shutil.which("Rscript") is None:
        return f"R oracle unavailable: Rscript is not on PATH; {install}"
    names = ", ".join(f"'{p}'" for p in R_PACKAGES)
    probe = (f"for (p in c({names})) cat(p, tryCatch(as.character(packageVersion(p)), "
             "error = function(e) 'MISSING'), '\\n')")
    try:
        done = subprocess.run(["Rscript", "--vanilla", "-e", probe], capture_output=True,
                              text=True, timeout=R_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"R oracle unavailable: `Rscript -e` did not run ({err}); {install}"
    if done.returncode != 0:
        return (f"R oracle unavailable: `Rscript -e` failed (exit {done.returncode}: "
                f"{done.stderr.strip()[:300]}); {install}")
    versions = dict(line.split() for line in done.stdout.splitlines() if line.strip())
    missing = [p for p in R_PACKAGES if versions.get(p, "MISSING") == "MISSING"]
    if missing:
        return f"R oracle unavailable: R package(s) {', '.join(missing)} missing; {install}"
    return None


R_PROBLEM = _r_unavailable()
R_REQUIRED = os.environ.get(REQUIRE_R_ENV, "").strip().lower() in ("1", "true", "yes")
if R_PROBLEM is not None and not R_REQUIRED:
    pytest.skip(R_PROBLEM, allow_module_level=True)


def test_r_oracle_is_available():
    """Only reached without R when NEUROFEAT_REQUIRE_R is set (.ci/run installed R): fail
    once, with the reason, instead of skipping the module."""
    assert R_PROBLEM is None, f"{R_PROBLEM} -- but {REQUIRE_R_ENV} is set, so R must be here"


OracleValues = dict[tuple[int, str], np.ndarray]


def run_r(cases: dict[str, pd.DataFrame], workdir: Path) -> dict[str, OracleValues]:
    """Run ``tests/oracle/r/run_oracle.R`` once over every family's cases.

    Returns ``{family: {(case, key): values}}``.
    """
    for family, frame in cases.items():
        frame.to_csv(workdir / f"{family}_in.csv", index=False, float_format="%.17g")
    command = ["Rscript", "--vanilla", str(R_DIR / "run_oracle.R"), str(workdir), *cases]
    done = subprocess.run(command, capture_output=True, text=True, timeout=R_TIMEOUT_S,
                          check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed (exit {done.returncode}):\n"
                             f"{done.stderr}")
    results = {}
    for family in cases:
        values: dict[tuple[int, str], list[float]] = {}
        with open(workdir / f"{family}_out.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                value = float("nan") if row["value"] == "NA" else float(row["value"])
                values.setdefault((int(row["case"]), row["key"]), []).append(value)
        results[family] = {key: np.asarray(v) for key, v in values.items()}
    return results


# --- random inputs --------------------------------------------------------------------

TIE_MODES = ("continuous", "rounded", "coarse")


def _rng(family: str, case: int) -> np.random.Generator:
    return np.random.default_rng([sum(map(ord, family)), case])


def _tie(values: np.ndarray, mode: str, *, step: float) -> np.ndarray:
    """Positive times or scores with no ties (continuous), some (rounded) or many (coarse)."""
    if mode == "continuous":
        return values
    scale = 10.0 if mode == "rounded" else 1.0 / step
    return np.ceil(values * scale) / scale


def _censored_times(rng: np.random.Generator, hazard: np.ndarray, mode: str,
                    *, censoring: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """Exponential event times, exponential censoring (rate ``censoring``), tied per ``mode``."""
    event_time = rng.exponential(1.0 / hazard)
    censor_time = rng.exponential(1.0 / censoring, hazard.size) if censoring > 0 else np.inf
    time = _tie(np.minimum(event_time, censor_time), mode, step=0.5)
    return time, event_time <= censor_time


def delong_cases() -> list[pd.DataFrame]:
    """Binary labels and two correlated scores; both AUCs strictly inside (0, 1)."""
    sizes = (8, 13, 30, 75, 160, 400)
    cases = []
    for case in range(N_DELONG_CASES):
        rng = _rng("delong", case)
        n, mode = sizes[case % len(sizes)], TIE_MODES[case // len(sizes) % len(TIE_MODES)]
        while True:
            y = rng.permutation(np.r_[[1, 1, 0, 0], rng.random(n - 4) < rng.uniform(0.2, 0.6)])
            a = rng.uniform(0.2, 1.5) * y + rng.standard_normal(n)
            b = 0.6 * a + 0.8 * rng.standard_normal(n) + rng.uniform(-0.5, 1.0) * y
            if mode == "rounded":
                a, b = np.round(a, 1), np.round(b, 1)
            elif mode == "coarse":                       # ordinal grades, as wfns in aSAH
                a, b = np.clip(np.round(a), -2, 2), np.clip(np.round(1.5 * b), -3, 3)
            aucs = roc_auc_score(y, a), roc_auc_score(y, b)
            if all(0 < auc < 1 for auc in aucs) and not np.array_equal(a, b):
                break
        cases.append(pd.DataFrame({"case": case, "y": y.astype(int), "a": a, "b": b}))
    return cases


def logrank_cases() -> list[pd.DataFrame]:
    """Two to four groups with their own hazards, censoring and (often) tied times."""
    sizes = (10, 24, 60, 150, 400, 37)
    cases = []
    for case in range(N_LOGRANK_CASES):
        rng = _rng("logrank", case)
        n, n_groups = sizes[case % len(sizes)], 2 + case % 3
        mode = TIE_MODES[case // len(sizes) % len(TIE_MODES)]
        while True:
            group = rng.permutation(np.r_[np.arange(n_groups),
                                         rng.integers(0, n_groups, n - n_groups)])
            hazard = rng.uniform(0.4, 2.0, n_groups)[group]
            time, event = _censored_times(rng, hazard, mode)
            if event.any():
                break
        cases.append(pd.DataFrame({"case": case, "time": time, "status": event.astype(int),
                                   "group": [f"g{g}" for g in group]}))
    return cases


KM_MODES = ("continuous", "rounded", "coarse", "uncensored", "last_event", "half_flat")


def km_cases() -> list[pd.DataFrame]:
    """One sample each. 'uncensored' (even n, ties) and 'half_flat' (even n, censorings
    only after the n/2-th event) land S exactly on 0.5; 'last_event' drives S to 0."""
    sizes = (3, 8, 16, 40, 120, 300)
    cases = []
    for case in range(N_KM_CASES):
        rng = _rng("kaplan-meier", case)
        n, mode = sizes[case % len(sizes)], KM_MODES[case // len(sizes) % len(KM_MODES)]
        n += n % 2 if mode in ("uncensored", "half_flat") else 0
        while True:   # kaplan_meier refuses all-tied times (SurvivalDataError) by design
            if mode == "uncensored":
                time, event = _censored_times(rng, np.full(n, 1.0), "coarse", censoring=0.0)
            elif mode == "half_flat":
                event_time = rng.exponential(1.0, n)
                half = np.sort(event_time)[n // 2 - 1]
                censor_time = half + rng.exponential(rng.uniform(0.2, 1.5), n)
                time, event = np.minimum(event_time, censor_time), event_time <= censor_time
            else:
                tie_mode = {"last_event": "rounded"}.get(mode, mode)
                time, event = _censored_times(rng, np.full(n, 1.0), tie_mode)
                if mode == "last_event":
                    event[time == time.max()] = True
            if np.unique(time).size >= 2:
                break
        cases.append(pd.DataFrame({"case": case, "time": time, "status": event.astype(int)}))
    return cases


def _tau_between_times(time: np.ndarray, event: np.ndarray, quantile: float) -> float:
    """A truncation time halfway between two observed times (never on one), with events
    at two distinct times or more before it."""
    uniq = np.unique(time)
    k = max(int(np.searchsorted(uniq, np.quantile(time, quantile))), 1)
    while k < uniq.size - 1 and np.unique(time[event & (time <= uniq[k - 1])]).size < 2:
        k += 1
    return float((uniq[k - 1] + uniq[k]) / 2.0)


def concordance_cases() -> list[pd.DataFrame]:
    """Risk scores (rounded: tied risks) related to event times, censoring, tau."""
    sizes = (8, 20, 50, 120, 300, 33)
    cases = []
    for case in range(N_CONCORDANCE_CASES):
        rng = _rng("concordance", case)
        n, mode = sizes[case % len(sizes)], TIE_MODES[case // len(sizes) % len(TIE_MODES)]
        if case >= 3 * len(sizes):
            mode = "coarse"
        while True:
            marker = rng.standard_normal(n)
            time, event = _censored_times(rng, np.exp(0.8 * marker), mode)
            if np.unique(time[event]).size >= 3:
                break
        risk = np.round(marker + 0.7 * rng.standard_normal(n), 1)
        tau = _tau_between_times(time, event, rng.uniform(0.6, 0.9))
        cases.append(pd.DataFrame({"case": case, "time": time, "status": event.astype(int),
                                   "risk": risk, "tau": tau}))
    return cases


DELONG = delong_cases()
LOGRANK = logrank_cases()
KM = km_cases()
CONCORDANCE = concordance_cases()


def _censoring_km(time: np.ndarray, event: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kaplan-Meier of the censoring times (a censoring tied with an event comes after it):
    distinct times, G just after each (G(t)) and just before each (G(t-))."""
    uniq = np.unique(time)
    after, before, g = np.empty(uniq.size), np.empty(uniq.size), 1.0
    for k, t in enumerate(uniq):
        before[k] = g
        at_risk = np.sum(time > t) + np.sum((time == t) & ~event)   # events at t leave first
        censored = np.sum((time == t) & ~event)
        g *= 1.0 - censored / at_risk if at_risk else 1.0
        after[k] = g
    return uniq, after, before


def _ipcw_conventions_differ(frame: pd.DataFrame) -> bool:
    """Whether 1/G(T_i)^2 and 1/G(T_i-)^2 are not proportional over the events before tau
    (they differ only where a censoring shares an event's time; a common factor cancels)."""
    time, event = frame.time.to_numpy(), frame.status.to_numpy(bool)
    uniq, g_after, g_before = _censoring_km(time, event)
    k = np.searchsorted(uniq, time[event & (time < frame.tau.iloc[0])])
    ratio = g_before[k] / g_after[k]
    return bool(np.ptp(ratio) > 1e-12 * ratio.max())


UNO_UNTIED = [c for c, f in enumerate(CONCORDANCE) if not _ipcw_conventions_differ(f)]
UNO_TIED = [c for c, f in enumerate(CONCORDANCE) if _ipcw_conventions_differ(f)]


def _before_first_event(frame: pd.DataFrame) -> bool:
    """Whether the curve has rows with S = 1 (a censoring before the first event)."""
    event = frame.status.to_numpy(bool)
    return bool(frame.time[~event].min() < frame.time[event].min()) if (~event).any() else False


KM_EARLY_CENSORING = [c for c, f in enumerate(KM) if _before_first_event(f)]


def _median_on_flat_half(frame: pd.DataFrame) -> tuple[float, float, float] | None:
    """The median of a curve that sits exactly on S = 0.5 from t_k on, by three rules
    (None when S never sits on 0.5):

    - next observed time (neurofeat's ``kaplan_meier`` before the fix): midpoint of t_k
      and the next observed time, event or censoring (t_k when there is none);
    - R's ``summary(survfit)$table`` (survmean) and neurofeat's ``kaplan_meier``: midpoint
      of t_k and the next time S drops (t_k when it never drops again);
    - R's ``quantile(survfit, 0.5)`` (findq): midpoint of t_k and the next time S drops
      (midpoint of t_k and the last observed time when it never drops again).
    """
    time, event = frame.time.to_numpy(), frame.status.to_numpy(bool)
    uniq = np.unique(time)
    deaths = np.array([np.sum((time == t) & event) for t in uniq])
    at_risk = np.array([np.sum(time >= t) for t in uniq])
    surv = np.cumprod(1.0 - deaths / at_risk)
    on_half = np.flatnonzero(np.abs(surv - 0.5) < 1e-9)
    if on_half.size == 0:
        return None
    k = int(on_half[0])
    drops = k + 1 + np.flatnonzero(deaths[k + 1:] > 0)
    next_observed = (uniq[k] + uniq[k + 1]) / 2 if k + 1 < uniq.size else uniq[k]
    next_drop = (uniq[k] + uniq[drops[0]]) / 2 if drops.size else uniq[k]
    quantile_rule = next_drop if drops.size else (uniq[k] + uniq[-1]) / 2
    return float(next_observed), float(next_drop), float(quantile_rule)


KM_FLAT_HALF = [c for c, f in enumerate(KM) if _median_on_flat_half(f) is not None]
# where the next observed time after the flat 0.5 is a censoring (the fixed bug)
KM_MEDIAN_RULES_DIFFER = [c for c in KM_FLAT_HALF
                          if (rules := _median_on_flat_half(KM[c]))[0] != rules[1]]
# where S never drops after reaching 0.5: R's table and quantile() disagree
KM_MEDIAN_NEVER_DROPS = [c for c in KM_FLAT_HALF
                         if (rules := _median_on_flat_half(KM[c]))[1] != rules[2]]


# --- R results (one Rscript for the module) -------------------------------------------

@pytest.fixture(scope="module")
def r_results(tmp_path_factory) -> dict[str, OracleValues]:
    if R_PROBLEM is not None:
        pytest.skip(f"{R_PROBLEM} (see test_r_oracle_is_available)")
    return run_r({"delong": pd.concat(DELONG), "logrank": pd.concat(LOGRANK),
                  "survfit": pd.concat(KM), "concordance": pd.concat(CONCORDANCE)},
                 tmp_path_factory.mktemp("r_oracle"))


@pytest.fixture(scope="module")
def proc_r(r_results) -> OracleValues:
    return r_results["delong"]


@pytest.fixture(scope="module")
def survdiff_r(r_results) -> OracleValues:
    return r_results["logrank"]


@pytest.fixture(scope="module")
def survfit_r(r_results) -> OracleValues:
    return r_results["survfit"]


@pytest.fixture(scope="module")
def concordance_r(r_results) -> OracleValues:
    return r_results["concordance"]


def _close(ours, theirs, *, rtol: float, atol: float, what: str) -> None:
    np.testing.assert_allclose(np.asarray(ours, float), np.asarray(theirs, float), rtol=rtol,
                               atol=atol, equal_nan=True, err_msg=what)


# --- DeLong vs pROC -------------------------------------------------------------------

@pytest.mark.parametrize("case", range(N_DELONG_CASES))
def test_delong_auc_variance_covariance_match_proc(proc_r, case):
    """R: ra <- roc(y, a, levels = c(0, 1), direction = "<"); rb <- roc(y, b, ...)
    auc(ra); var(ra, method = "delong"); var(rb, ...); cov(ra, rb, method = "delong")
    """
    frame = DELONG[case]
    y = frame.y.to_numpy()
    auc, cov = delong_covariance(y, np.vstack([frame.a, frame.b]))
    r = lambda key: proc_r[case, key][0]
    _close(auc, [r("auc_a"), r("auc_b")], rtol=0, atol=1e-12, what=f"case {case}: AUC")
    _close([cov[0, 0], cov[1, 1]], [r("var_a"), r("var_b")], rtol=1e-9, atol=0,
           what=f"case {case}: DeLong variance")
    _close(cov[0, 1], r("cov_ab"), rtol=1e-9, atol=1e-15, what=f"case {case}: DeLong cov")


@pytest.mark.parametrize("case", range(N_DELONG_CASES))
def test_delong_ci_matches_proc(proc_r, case):
    """R: ci.auc(ra, method = "delong")   (95 %; low, AUC, high)"""
    frame = DELONG[case]
    ours = delong_auc(frame.y.to_numpy(), frame.a.to_numpy())
    _close([ours.ci_low, ours.auc, ours.ci_high], proc_r[case, "ci_a"], rtol=0, atol=1e-12,
           what=f"case {case}: DeLong CI of the AUC")


@pytest.mark.parametrize("case", range(N_DELONG_CASES))
def test_paired_delong_test_matches_proc(proc_r, case):
    """R: roc.test(ra, rb, method = "delong", paired = TRUE)   (statistic, p.value, conf.int)
    roc.test(ra, rb, method = "delong", paired = TRUE, alternative = "greater" / "less")
    """
    frame = DELONG[case]
    y, a, b = frame.y.to_numpy(), frame.a.to_numpy(), frame.b.to_numpy()
    two = delong_test(y, a, b)
    _close(two.z, proc_r[case, "z"], rtol=1e-9, atol=0, what=f"case {case}: Z")
    _close(two.p_value, proc_r[case, "p"], rtol=1e-9, atol=0, what=f"case {case}: p")
    _close([two.diff_ci_low, two.diff_ci_high], proc_r[case, "diff_ci"], rtol=0, atol=1e-12,
           what=f"case {case}: CI of the AUC difference")
    for alternative in ("greater", "less"):
        _close(delong_test(y, a, b, alternative=alternative).p_value,
               proc_r[case, f"p_{alternative}"], rtol=1e-9, atol=0,
               what=f"case {case}: one-sided p ({alternative})")


# --- log-rank vs survdiff -------------------------------------------------------------

@pytest.mark.parametrize("case", range(N_LOGRANK_CASES))
def test_logrank_matches_survdiff(survdiff_r, case):
    """R: fit <- survdiff(Surv(time, status) ~ group)
    fit$chisq; fit$n; fit$obs; fit$exp; pchisq(fit$chisq, sum(fit$exp > 0) - 1, lower.tail = FALSE)
    """
    frame = LOGRANK[case]
    ours = logrank_test(frame.time, frame.status, frame.group)
    assert ours.df == survdiff_r[case, "df"][0], f"case {case}: degrees of freedom"
    _close(ours.statistic, survdiff_r[case, "chisq"], rtol=1e-9, atol=1e-12,
           what=f"case {case}: chi-squared")
    _close(ours.p_value, survdiff_r[case, "p"], rtol=1e-9, atol=1e-15, what=f"case {case}: p")
    np.testing.assert_array_equal(ours.n, survdiff_r[case, "n"], err_msg=f"case {case}: n")
    np.testing.assert_array_equal(ours.observed, survdiff_r[case, "obs"],
                                  err_msg=f"case {case}: observed")
    _close(ours.expected, survdiff_r[case, "exp"], rtol=1e-10, atol=1e-12,
           what=f"case {case}: expected")


# --- Kaplan-Meier vs survfit ----------------------------------------------------------

@pytest.mark.parametrize("case", range(N_KM_CASES))
def test_kaplan_meier_curve_matches_survfit(survfit_r, case):
    """R: fit <- survfit(Surv(time, status) ~ 1)   (conf.type = "log")
    fit$time; fit$n.risk; fit$n.event; fit$n.censor; fit$surv
    summary(fit, censored = TRUE)$std.err
    """
    frame = KM[case]
    km = kaplan_meier(frame.time, frame.status)
    r = lambda key: survfit_r[case, key]
    np.testing.assert_array_equal(km.time, r("time"), err_msg=f"case {case}: times")
    for ours, key in ((km.n_at_risk, "n_risk"), (km.n_events, "n_event"),
                      (km.n_censored, "n_censor")):
        np.testing.assert_array_equal(ours, r(key), err_msg=f"case {case}: {key}")
    _close(km.survival, r("surv"), rtol=0, atol=1e-13, what=f"case {case}: S(t)")
    _close(km.std_err, r("std_err"), rtol=1e-9, atol=1e-15, what=f"case {case}: SE of S(t)")


@pytest.mark.parametrize("conf_type", ["log", "log-log", "plain"])
@pytest.mark.parametrize("case", range(N_KM_CASES))
def test_kaplan_meier_interval_matches_survfit(survfit_r, case, conf_type):
    """R: fit <- survfit(Surv(time, status) ~ 1, conf.type = conf_type); fit$lower; fit$upper

    Every row, except the log-log bounds of rows with S = 1 (censorings before the first
    event), which R leaves NA: see the xfail below.
    """
    frame = KM[case]
    km = kaplan_meier(frame.time, frame.status, conf_type=conf_type)
    rows = km.survival < 1 if conf_type == "log-log" else np.ones(km.time.size, bool)
    _close(km.ci_low[rows], survfit_r[case, f"{conf_type}:lower"][rows], rtol=1e-10,
           atol=1e-13, what=f"case {case}: lower {conf_type} bound")
    _close(km.ci_high[rows], survfit_r[case, f"{conf_type}:upper"][rows], rtol=1e-10,
           atol=1e-13, what=f"case {case}: upper {conf_type} bound")


@pytest.mark.xfail(strict=True, reason=(
    "before the first event (S = 1) R's survfit(conf.type='log-log') gives NA bounds "
    "(survfit_confint sets p == 1 to NA), neurofeat gives [1, 1] like scikit-survival's "
    "kaplan_meier_estimator and lifelines' KaplanMeierFitter. Reported, not fixed here."))
@pytest.mark.parametrize("case", KM_EARLY_CENSORING)
def test_kaplan_meier_loglog_interval_before_first_event_matches_survfit(survfit_r, case):
    """R: fit <- survfit(Surv(time, status) ~ 1, conf.type = "log-log"); fit$lower; fit$upper
    (rows with fit$surv == 1)
    """
    frame = KM[case]
    km = kaplan_meier(frame.time, frame.status, conf_type="log-log")
    rows = km.survival == 1
    _close(km.ci_low[rows], survfit_r[case, "log-log:lower"][rows], rtol=1e-10, atol=1e-13,
           what=f"case {case}: lower log-log bound where S = 1")
    _close(km.ci_high[rows], survfit_r[case, "log-log:upper"][rows], rtol=1e-10, atol=1e-13,
           what=f"case {case}: upper log-log bound where S = 1")


@pytest.mark.parametrize("conf_type", ["log", "log-log", "plain"])
@pytest.mark.parametrize("case", range(N_KM_CASES))
def test_kaplan_meier_median_matches_survfit(survfit_r, case, conf_type):
    """R: fit <- survfit(Surv(time, status) ~ 1, conf.type = conf_type)
    summary(fit)$table[c("median", "0.95LCL", "0.95UCL")]   (NA = not reached)
    quantile(fit, 0.5, conf.int = FALSE)                    (conf.type = "log")

    Every case, median and interval, compared with the table. The median also equals
    R's quantile(), except where S reaches 0.5 and never drops again
    (``KM_MEDIAN_NEVER_DROPS``). There R's two functions disagree and neurofeat follows
    the table (see the module docstring).
    """
    frame = KM[case]
    km = kaplan_meier(frame.time, frame.status, conf_type=conf_type)
    r_median, r_low, r_high = survfit_r[case, f"{conf_type}:median"]
    _close([km.median_ci_low, km.median_ci_high], [r_low, r_high], rtol=0, atol=1e-12,
           what=f"case {case}: {conf_type} interval of the median")
    _close(km.median, r_median, rtol=0, atol=1e-12, what=f"case {case}: median")
    if case not in KM_MEDIAN_NEVER_DROPS:
        _close(km.median, survfit_r[case, "log:quantile_median"], rtol=0, atol=1e-12,
               what=f"case {case}: median vs quantile(fit, 0.5)")


@pytest.mark.parametrize("case", KM_MEDIAN_RULES_DIFFER)
def test_kaplan_meier_median_on_a_flat_half_matches_survfit(survfit_r, case):
    """R: summary(survfit(Surv(time, status) ~ 1))$table["median"]
    (curves that sit on S = 0.5 with a censoring before the next drop)

    These cases exposed the old rule, which took the midpoint to the next observed time
    even when it was a censoring. They were a strict xfail until kaplan_meier was fixed.
    """
    frame = KM[case]
    km = kaplan_meier(frame.time, frame.status)
    _close(km.median, survfit_r[case, "log:median"][0], rtol=0, atol=1e-12,
           what=f"case {case}: median")


@pytest.mark.parametrize("case", KM_FLAT_HALF)
def test_kaplan_meier_median_on_a_flat_half_follows_the_written_rules(survfit_r, case):
    """R: fit <- survfit(Surv(time, status) ~ 1)
    summary(fit)$table["median"]; quantile(fit, 0.5, conf.int = FALSE)

    On every curve that sits on S = 0.5, R's table is the next-drop rule (t_k when S never
    drops again) and R's quantile() the next-drop rule (midpoint of t_k and the last time
    when S never drops again). neurofeat's median is the table's rule
    (:func:`_median_on_flat_half`).
    """
    frame = KM[case]
    _, next_drop, quantile_rule = _median_on_flat_half(frame)
    _close(survfit_r[case, "log:median"][0], next_drop, rtol=0, atol=1e-12,
           what=f"case {case}: R's summary(fit)$table median vs the next-drop rule")
    _close(survfit_r[case, "log:quantile_median"][0], quantile_rule, rtol=0, atol=1e-12,
           what=f"case {case}: R's quantile(fit, 0.5) vs its rule")
    _close(kaplan_meier(frame.time, frame.status).median, next_drop, rtol=0, atol=1e-12,
           what=f"case {case}: neurofeat's median vs the next-drop rule")


# --- concordance vs survival::concordance ---------------------------------------------

@pytest.mark.parametrize("case", range(N_CONCORDANCE_CASES))
def test_harrell_c_matches_r_concordance(concordance_r, case):
    """R: concordance(Surv(time, status) ~ risk, reverse = TRUE)$concordance"""
    frame = CONCORDANCE[case]
    ours = harrell_c(frame.time, frame.status, frame.risk)
    _close(ours, concordance_r[case, "harrell"], rtol=0, atol=1e-12,
           what=f"case {case}: Harrell's C")


@pytest.mark.parametrize("case", UNO_UNTIED)
def test_uno_c_matches_r_without_event_censoring_ties(concordance_r, case):
    """R: concordance(Surv(time, status) ~ risk, reverse = TRUE, timewt = "n/G2",
    ymax = tau)$concordance

    Cases where the weights 1/G(T_i)^2 and 1/G(T_i-)^2 are proportional over the events
    before tau. This always holds when no event time equals a censoring time. tau lies
    halfway between two observed times, so neurofeat's (and sksurv's) ``time < tau``
    selects the same events as R's ``etime <= ymax``.
    """
    frame = CONCORDANCE[case]
    ours = uno_c(frame.time, frame.status, frame.risk, tau=frame.tau.iloc[0])
    _close(ours, concordance_r[case, "uno"], rtol=0, atol=1e-12, what=f"case {case}: Uno's C")


@pytest.mark.parametrize("case", UNO_UNTIED)
def test_uno_c_matches_sksurv_without_event_censoring_ties(case):
    """sksurv: concordance_index_ipcw(y, y, risk, tau=tau)[0], with G(T_i) in place of
    G(T_i-). The two give the same C where the weights are proportional."""
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    frame = CONCORDANCE[case]
    y = Surv.from_arrays(frame.status.to_numpy(bool), frame.time.to_numpy())
    tau = frame.tau.iloc[0]
    _close(uno_c(frame.time, frame.status, frame.risk, tau=tau),
           concordance_index_ipcw(y, y, frame.risk.to_numpy(), tau=tau)[0], rtol=0,
           atol=1e-12, what=f"case {case}: Uno's C vs sksurv")


@pytest.mark.parametrize("case", UNO_TIED)
def test_uno_c_matches_r_with_event_censoring_ties(concordance_r, case):
    """R: concordance(Surv(time, status) ~ risk, reverse = TRUE, timewt = "n/G2",
    ymax = tau)$concordance   (data with an event and a censoring at the same time)

    These cases exposed the G(T_i) weights that uno_c took from sksurv's
    concordance_index_ipcw. They were a strict xfail until uno_c used G(T_i-).
    """
    frame = CONCORDANCE[case]
    ours = uno_c(frame.time, frame.status, frame.risk, tau=frame.tau.iloc[0])
    _close(ours, concordance_r[case, "uno"], rtol=0, atol=1e-12, what=f"case {case}: Uno's C")


def test_random_cases_cover_the_known_differences():
    assert len(UNO_UNTIED) >= 6 and len(UNO_TIED) >= 6, (UNO_UNTIED, UNO_TIED)
    assert 3 <= len(KM_EARLY_CENSORING) < N_KM_CASES, KM_EARLY_CENSORING
    assert 2 <= len(KM_MEDIAN_RULES_DIFFER), KM_MEDIAN_RULES_DIFFER
    assert 1 <= len(KM_MEDIAN_NEVER_DROPS), KM_MEDIAN_NEVER_DROPS
    # flats where every rule agrees
    assert len(KM_FLAT_HALF) >= len(set(KM_MEDIAN_RULES_DIFFER + KM_MEDIAN_NEVER_DROPS)) + 3, \
        KM_FLAT_HALF


def _uno_by_pairs(time: np.ndarray, event: np.ndarray, risk: np.ndarray, tau: float,
                  g_of: Callable[[np.ndarray], np.ndarray]) -> float:
    """Uno's C by its definition over pairs: events before tau weighted by 1 / g_of(T_i)^2;
    i, j comparable when T_i < T_j, or T_i == T_j and j is censored; tied risks count 1/2."""
    earlier = event & (time < tau)
    weight = np.where(earlier, 1.0 / np.square(g_of(time)), 0.0)
    comparable = (time[None, :] > time[:, None]) | (
        (time[None, :] == time[:, None]) & ~event[None, :])
    credit = (risk[:, None] > risk[None, :]) + 0.5 * (risk[:, None] == risk[None, :])
    return float((weight[:, None] * comparable * credit).sum()
                 / (weight[:, None] * comparable).sum())


@pytest.mark.parametrize("case", range(N_CONCORDANCE_CASES))
def test_uno_written_out_with_g_left_limit_is_r_and_with_g_is_sksurv(concordance_r, case):
    """R: concordance(Surv(time, status) ~ risk, reverse = TRUE, timewt = "n/G2", ymax = tau)
    sksurv: concordance_index_ipcw(y, y, risk, tau=tau)

    Pins the cause of the difference, on every case. Uno's C written out over pairs with
    the censoring survival's left limit G(T_i-) equals R and neurofeat's uno_c. Written
    out with G(T_i), it equals scikit-survival. On untied data the two weightings are
    proportional, so all four agree.
    """
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    frame = CONCORDANCE[case]
    time, event = frame.time.to_numpy(), frame.status.to_numpy(bool)
    risk, tau = frame.risk.to_numpy(), frame.tau.iloc[0]
    uniq, g_after, g_before = _censoring_km(time, event)
    at = lambda values: lambda t: values[np.searchsorted(uniq, t)]
    with np.errstate(divide="ignore"):
        left_limit = _uno_by_pairs(time, event, risk, tau, at(g_before))
        right_continuous = _uno_by_pairs(time, event, risk, tau, at(g_after))
    _close(left_limit, concordance_r[case, "uno"], rtol=0, atol=1e-12,
           what=f"case {case}: Uno with G(T-) vs R")
    _close(left_limit, uno_c(time, event, risk, tau=tau), rtol=0, atol=1e-12,
           what=f"case {case}: Uno with G(T-) vs neurofeat")
    y = Surv.from_arrays(event, time)
    _close(right_continuous, concordance_index_ipcw(y, y, risk, tau=tau)[0], rtol=0,
           atol=1e-12, what=f"case {case}: Uno with G(T) vs sksurv")
