"""Simulated cohorts for calibrating neurofeat's p-values and intervals (issue 13).

Pure generators: a :class:`SimulationSetting` and a numpy ``Generator`` in, arrays out.
No fitting happens here; the calibration harness (``benchmarks/bench_calibration.py``)
runs the real probes and comparisons on these cohorts.

The population
--------------
Every patient has a latent trait ``z ~ N(0, 1)``. The outcome depends on ``z`` only:

- ``binary``: ``y = 1{z * sqrt(r) + e * sqrt(1 - r) > q}`` with ``e ~ N(0, 1)``; ``q`` sets
  the prevalence (0.5 balanced, 0.1 rare) and ``r = outcome_r2`` how much of the
  outcome the trait explains;
- ``continuous``: ``y = z * sqrt(r) + e * sqrt(1 - r)`` (binarised at ``threshold`` by
  the comparison, as a continuous task is);
- ``survival``: exponential event time with hazard ``exp(hazard_beta * z)`` (times
  ``exp(site_hazard * (k - (n_sites - 1) / 2))`` at site ``k``: survival that differs by
  site, 0 by default), independent exponential censoring scaled so that about
  ``event_rate`` of patients have the event.

A backbone's embedding is ``X = signal * z e_1 + N(0, I_d)`` plus, with sites, a site
mean shift ``N(0, site_shift^2 I_d)`` per site (a batch effect unrelated to the
outcome). ``signal = 0`` for every backbone is the **exact null**: the embeddings are
independent of the outcome, so every probe's expected AUC/BA/c-index is exactly 0.5 and
every pair of such backbones is exchangeable (true difference exactly 0). A *planted
effect* gives backbones ``signal > 0``; their expected performance is estimated by
:func:`expected_performance` (Monte Carlo over training sets, each scored on a large
independent test set).

Examples
--------
>>> import numpy as np
>>> s = SimulationSetting(kind="binary", n=40, d=4, prevalence=0.25)
>>> c = simulate_cohort(s, {"a": 0.0, "b": 1.0}, np.random.default_rng(0))
>>> c.embeddings["b"].shape, int(c.y.sum())
((40, 4), 10)
"""

from __future__ import annotations

import functools

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["SimulationSetting", "SimulatedCohort", "simulate_cohort", "draw_population",
           "expected_performance", "performance_draws"]


@dataclass(frozen=True)
class SimulationSetting:
    """One simulated design.

    Attributes
    ----------
    kind : {'binary', 'continuous', 'survival'}
    n : int
        Patients in the cohort.
    d : int
        Embedding dimension (the signal, if any, lives in the first one).
    prevalence : float
        Binary tasks: fraction of positives (exact in every cohort, so stratified folds
        always hold both classes).
    outcome_r2 : float
        Share of the outcome's latent variance explained by ``z`` (binary, continuous).
    hazard_beta : float
        Survival: log hazard ratio per SD of ``z``.
    event_rate : float
        Survival: target fraction of events (censoring is tuned to it).
    n_sites : int
        1 = no site structure.
    site_shift : float
        SD of each site's mean shift of the embeddings.
    site_prefix : str
        With sites: only backbones whose name starts with this prefix carry the site
        shifts ('' = every backbone shares them). E.g. 'a' for a base family that
        carries scanner effects against a family that removed them: still an exact null
        (sites are independent of the outcome), but the two sides are no longer
        exchangeable.
    threshold : float
        Continuous tasks: the label is ``y >= threshold``.
    site_hazard : float
        Survival with sites: log hazard ratio between neighbouring sites (site ``k``
        multiplies the hazard by ``exp(site_hazard * (k - (n_sites - 1) / 2))``). With
        ``site_shift > 0`` the embeddings then predict survival through the site alone:
        a null for "no information beyond the site" (outcomes exchangeable within site
        only).
    """

    kind: str = "binary"
    n: int = 120
    d: int = 16
    prevalence: float = 1 / 3
    outcome_r2: float = 0.6
    hazard_beta: float = 1.0
    event_rate: float = 0.6
    n_sites: int = 1
    site_shift: float = 0.5
    threshold: float = 0.0
    site_prefix: str = ""
    site_hazard: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("binary", "continuous", "survival"):
            raise ValueError(f"kind must be 'binary', 'continuous' or 'survival', "
                             f"got {self.kind!r}")
        if self.n < 10 or self.d < 1:
            raise ValueError(f"need n >= 10 and d >= 1, got n={self.n}, d={self.d}")
        if not 0 < self.prevalence < 1 or not 0 < self.event_rate <= 1:
            raise ValueError("prevalence and event_rate must lie in (0, 1)")

    def label(self) -> str:
        """Short description, e.g. ``binary p=0.33 n=120 d=16``."""
        extra = {"binary": f"p={self.prevalence:.2g}", "continuous": "",
                 "survival": f"events={self.event_rate:.2g}"}[self.kind]
        sites = f" sites={self.n_sites}" if self.n_sites > 1 else ""
        if self.n_sites > 1 and self.site_shift != 0.5:
            sites += f" shift={self.site_shift:g}"
        if self.n_sites > 1 and self.site_prefix:
            sites += f" (in {self.site_prefix}* only)"
        if self.n_sites > 1 and self.kind == "survival" and self.site_hazard:
            sites += f" site-hazard={self.site_hazard:g}"
        return " ".join(x for x in (self.kind, extra, f"n={self.n}", f"d={self.d}") if x) \
            + sites


@dataclass(frozen=True, eq=False)
class SimulatedCohort:
    """A simulated cohort.

    Attributes
    ----------
    setting : SimulationSetting
    patient_ids : ndarray of str, shape (n,)
    sites : ndarray of str, shape (n,)
    z : ndarray, shape (n,)
        The latent trait.
    y : ndarray, shape (n,)
        Binary (float 0/1) or continuous outcome; NaN for survival.
    time, event : ndarray, shape (n,)
        Survival outcome (NaN / False for other kinds).
    embeddings : dict backbone -> ndarray (n, d)
    """

    setting: SimulationSetting
    patient_ids: np.ndarray
    sites: np.ndarray
    z: np.ndarray
    y: np.ndarray
    time: np.ndarray
    event: np.ndarray
    embeddings: dict


def _binary_outcome(z: np.ndarray, setting: SimulationSetting, rng: np.random.Generator,
                    exact: bool) -> np.ndarray:
    r = setting.outcome_r2
    latent = z * np.sqrt(r) + rng.normal(size=z.size) * np.sqrt(1 - r)
    if exact:
        # exactly round(prevalence * n) positives: the highest latent values
        n_pos = int(np.clip(round(setting.prevalence * z.size), 1, z.size - 1))
        y = np.zeros(z.size)
        y[np.argsort(-latent)[:n_pos]] = 1.0
        return y
    return (latent > special.ndtri(1 - setting.prevalence)).astype(float)


def _censoring_rate(setting: SimulationSetting) -> float:
    """Exponential censoring rate giving about ``event_rate`` events (hazard exp(beta z))."""
    return _censoring_rate_for(float(setting.hazard_beta), float(setting.event_rate))


@functools.lru_cache(maxsize=64)
def _censoring_rate_for(hazard_beta: float, event_rate: float) -> float:
    # depends on the setting only: computed once, not on every population draw
    if event_rate >= 1:
        return 0.0
    z = np.random.default_rng(12345).normal(size=20000)
    lam = np.exp(hazard_beta * z)

    def events(c):  # P(T < C) = lam / (lam + c)
        return float(np.mean(lam / (lam + c)))

    lo, hi = 1e-6, 1e6
    for _ in range(100):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if events(mid) > event_rate else (lo, mid)
    return float(np.sqrt(lo * hi))


def draw_population(setting: SimulationSetting, signals: Mapping[str, float], n: int,
                    rng: np.random.Generator, *, exact_prevalence: bool = False,
                    site_means: np.ndarray | None = None) -> SimulatedCohort:
    """``n`` patients from the population of ``setting`` (see the module docstring).

    Parameters
    ----------
    signals : mapping backbone -> float
        Signal strength of each backbone (0 = noise embedding).
    exact_prevalence : bool
        Binary tasks: exactly ``round(prevalence n)`` positives (the cohort); otherwise
        each patient is positive with the population probability (test sets).
    site_means : ndarray, shape (n_sites, d), optional
        Site shifts (drawn when None).
    """
    z = rng.normal(size=n)
    y = np.full(n, np.nan)
    time = np.full(n, np.nan)
    event = np.zeros(n, bool)
    if setting.kind == "binary":
        y = _binary_outcome(z, setting, rng, exact_prevalence)
    elif setting.kind == "continuous":
        r = setting.outcome_r2
        y = z * np.sqrt(r) + rng.normal(size=n) * np.sqrt(1 - r)
    else:
        # unit-exponential draws first and the sites after them, in the order of the
        # cohorts before site_hazard existed (same seeds, same cohorts)
        raw_event = rng.exponential(size=n)
        c = _censoring_rate(setting)
        t_cens = rng.exponential(size=n) / c if c > 0 else np.full(n, np.inf)
    sites = np.array([f"S{i % setting.n_sites}" for i in range(n)])
    rng.shuffle(sites)
    site_index = np.array([int(s[1:]) for s in sites])
    if setting.kind == "survival":
        lam = np.exp(setting.hazard_beta * z)
        if setting.site_hazard and setting.n_sites > 1:
            lam = lam * np.exp(setting.site_hazard * (site_index - (setting.n_sites - 1) / 2))
        t_event = raw_event / lam
        event = t_event <= t_cens
        time = np.minimum(t_event, t_cens)
    if site_means is None:
        site_means = rng.normal(scale=setting.site_shift, size=(setting.n_sites, setting.d))
    shift = site_means[site_index] if setting.n_sites > 1 else 0.0
    embeddings = {}
    for name, strength in signals.items():
        X = rng.normal(size=(n, setting.d))
        if name.startswith(setting.site_prefix):
            X += shift
        X[:, 0] += strength * z
        embeddings[name] = X
    ids = np.array([f"SIM{i:05d}" for i in range(n)])
    return SimulatedCohort(setting, ids, sites, z, y, time, event, embeddings)


def simulate_cohort(setting: SimulationSetting, signals: Mapping[str, float],
                    rng: np.random.Generator) -> SimulatedCohort:
    """One cohort of ``setting.n`` patients (binary: exactly the stated prevalence).

    Parameters
    ----------
    setting : SimulationSetting
    signals : mapping backbone -> float
        0 for every backbone = exact null.
    rng : numpy Generator

    Returns
    -------
    SimulatedCohort
    """
    return draw_population(setting, signals, setting.n, rng, exact_prevalence=True)


def expected_performance(setting: SimulationSetting, signals: Mapping[str, float],
                         fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray,
                                                np.ndarray], np.ndarray],
                         metrics: Mapping[str, Callable[[SimulatedCohort, np.ndarray],
                                                        float]],
                         *, n_train: int, n_draws: int = 100, n_test: int = 5000,
                         seed: int = 0) -> dict[str, dict[str, tuple[float, float]]]:
    """Expected performance of a probe trained on ``n_train`` patients (the estimand).

    For each of ``n_draws`` independent training sets of ``n_train`` patients (same
    patients for every backbone, as in a paired comparison), fit and score a large
    independent test set of ``n_test`` patients, drawn afresh for every training set;
    average. (One test set shared by all draws would add its own sampling error to every
    draw alike, about 0.005 on a c-index at 5,000 patients, three times the standard
    error over 200 draws, and the standard error would not show it.)

    Parameters
    ----------
    fit_predict : callable
        ``fit_predict(X_train, target_train, X_test, cohort_train) -> scores (n_test,)``
        where ``target_train`` is ``y`` (binary/continuous); for survival it receives the
        training cohort's (time, event) as a structured pair via ``cohort_train``.
    metrics : mapping name -> callable(test_cohort, scores) -> float

    Returns
    -------
    dict backbone -> dict metric -> (mean, Monte-Carlo standard error)

    Notes
    -----
    With sites, each cohort draws its own site shifts (a random batch effect), so use
    site structure for null settings; coverage settings have one site.
    """
    values = performance_draws(setting, signals, fit_predict, metrics, n_train=n_train,
                               n_draws=n_draws, n_test=n_test, seed=seed)
    return {b: {m: (float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(len(v))))
                for m, v in per.items()} for b, per in values.items()}


def performance_draws(setting: SimulationSetting, signals: Mapping[str, float],
                      fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray,
                                             np.ndarray], np.ndarray],
                      metrics: Mapping[str, Callable[[SimulatedCohort, np.ndarray], float]],
                      *, n_train: int, n_draws: int = 100, n_test: int = 5000,
                      seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The per-draw values behind :func:`expected_performance` (same arguments): for each
    backbone and metric, the ``n_draws`` test-set scores, one per training draw. Chunks
    drawn from different seeds can be pooled (the calibration harness shares them out
    over its workers)."""
    rng = np.random.default_rng(seed)
    values: dict[str, dict[str, list[float]]] = {b: {m: [] for m in metrics} for b in signals}
    for _ in range(n_draws):
        train = draw_population(setting, signals, n_train, rng, exact_prevalence=True)
        test = draw_population(setting, signals, n_test, rng)
        for b in signals:
            s = fit_predict(train.embeddings[b], train.y, test.embeddings[b], train)
            for m, fn in metrics.items():
                values[b][m].append(float(fn(test, s)))
    return {b: {m: np.asarray(v, dtype=float) for m, v in per.items()}
            for b, per in values.items()}
