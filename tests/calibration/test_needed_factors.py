"""The harness's ``--needed-factors`` (how the correction factors were measured) recovers a
known factor from per-fold values with a known variance structure.

Fold values ``D_r + e_rj`` (``D_r ~ N(0, tau^2)`` shared by the J folds of replication r,
``e_rj ~ N(0, sigma^2)``): Var(mean) = tau^2 + sigma^2 / J and E[s^2] = sigma^2, so the
corrected variance ``(1/J + c/(k-1)) s^2`` is right at ``c = (k-1) tau^2 / sigma^2``; with
normal values the calibrated t is then exactly t(J-1), so the factor at which it rejects 5 %
is the same ``c``.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_calibration.py"


def _harness():
    spec = importlib.util.spec_from_file_location("bench_calibration", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_calibration", module)   # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def _dump(path: Path, reps: int, ratio: float, k: int = 5, r: int = 5, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folds = []
    for rep in range(reps):
        for pooled, members in ((False, 4), (True, 1)):
            for _ in range(members):
                d = rng.normal(0, np.sqrt(ratio)) + rng.normal(0, 1, size=(r, k))
                folds.append({"rep": rep, "metric": "auc", "pooled": pooled, "a": d,
                              "b": np.zeros((r, k)), "n_train": 96.0})
    with open(path / "synthetic_null.pkl", "wb") as fh:
        pickle.dump({"spec": "synthetic null", "n_splits": k, "n_repeats": r,
                     "folds": folds}, fh)


@pytest.mark.slow
def test_needed_factors_recover_a_known_factor(tmp_path):
    ratio = 0.4                        # tau^2 / sigma^2  ->  c = 4 * 0.4 = 1.6
    _dump(tmp_path, reps=1500, ratio=ratio)
    table = _harness().needed_factors(tmp_path, n_boot=60).set_index("row")
    pair = table.loc["pair"]
    assert pair["reps"] == 1500 and pair["rows"] == 6000
    assert pair["c_low"] < 1.6 < pair["c_high"], pair
    assert pair["c_low"] < pair["c"] < pair["c_high"]
    assert pair["c_5"] == pytest.approx(1.6, abs=0.2), pair
    assert pair["c_5_low"] < pair["c_5"] < pair["c_5_high"]
    pooled = table.loc["pooled"]
    assert pooled["c_low"] < 1.6 < pooled["c_high"], pooled
    # a wrong factor is detected: twice the data-set variance is outside the interval
    assert not pair["c_low"] < 3.2 < pair["c_high"]


def test_needed_factors_report_the_share_of_tied_folds(tmp_path):
    """``tied``: folds in which both sides sit exactly at 0.5 (both probes collapsed)."""
    rng = np.random.default_rng(1)
    folds = []
    for rep in range(40):
        a = 0.5 + rng.normal(0, 0.05, size=(5, 5))
        b = 0.5 + rng.normal(0, 0.05, size=(5, 5))
        a[0, :] = b[0, :] = 0.5            # 5 of 25 folds tied
        a[1, 0] = 0.5                      # one side at 0.5 only: not tied
        folds.append({"rep": rep, "metric": "ba", "pooled": False, "a": a, "b": b,
                      "n_train": 96.0})
    with open(tmp_path / "tied_null.pkl", "wb") as fh:
        pickle.dump({"spec": "tied null", "n_splits": 5, "n_repeats": 5, "folds": folds}, fh)
    row = _harness().needed_factors(tmp_path, n_boot=5).iloc[0]
    assert row["tied"] == pytest.approx(5 / 25)


@pytest.mark.parametrize("m", [2, 3, 10, 18, 24])
def test_tied_folds_cap_the_fold_t_statistic(m):
    """The bound the harness's docstring states: with m of J fold differences non-zero,
    |t| = |mean| / (s / sqrt(J)) <= sqrt(m (J - 1) / (J - m)), reached when the m are
    equal; so at 5 x 5 CV and the c-index factor 2.3 fewer than 19 untied folds can never
    give p < 0.05."""
    from scipy import special

    j = 25
    bound = np.sqrt(m * (j - 1) / (j - m))
    rng = np.random.default_rng(m)
    for _ in range(2000):
        d = np.zeros(j)
        d[:m] = rng.normal(rng.normal(), rng.uniform(0.01, 2), size=m)
        t = d.mean() / (d.std(ddof=1) / np.sqrt(j))
        assert abs(t) <= bound + 1e-9
    d = np.zeros(j)
    d[:m] = 0.3
    assert d.mean() / (d.std(ddof=1) / np.sqrt(j)) == pytest.approx(bound)
    # the calibrated t divides the fold t by sqrt(1 + c J / (k - 1)) (k = 5 folds)
    critical = special.stdtrit(j - 1, 0.975) * np.sqrt(1 + 2.3 * j / 4)
    assert (bound > critical) == (m >= 19)


def test_needed_factors_read_equal_signal_dumps_but_not_planted_differences(tmp_path):
    """The same signal in both families is a null for the difference (its dump counts);
    a planted difference and the truth files next to the dumps do not."""
    rng = np.random.default_rng(2)
    for name in ("s equal", "s equal signal=0.3", "s diff"):
        folds = [{"rep": rep, "metric": "auc", "pooled": False,
                  "a": 0.6 + rng.normal(0, 0.05, size=(5, 5)), "b": np.full((5, 5), 0.6),
                  "n_train": 96.0} for rep in range(25)]
        with open(tmp_path / (name.replace(" ", "_") + ".pkl"), "wb") as fh:
            pickle.dump({"spec": name, "n_splits": 5, "n_repeats": 5, "folds": folds}, fh)
    with open(tmp_path / "s_equal.truth.pkl", "wb") as fh:
        pickle.dump({"A": {"auc": 0.6}, "B": {"auc": 0.6}}, fh)
    table = _harness().needed_factors(tmp_path, n_boot=5)
    assert sorted(table["setting"]) == ["s equal", "s equal signal=0.3"]


def test_truth_chunks_pool_to_the_estimate_of_all_draws():
    """The harness draws the expected performance in chunks that its pool shares out: the
    chunks cover exactly the requested draws with distinct seeds (so the estimate does
    not depend on the number of workers), and pooling them gives the mean and Monte-Carlo
    standard error of all their draws together."""
    harness = _harness()
    spec = next(s for s in harness.all_specs()
                if s.name == "survival events=0.6 n=300 d=2048 equal")
    jobs = harness.truth_chunks(spec, probe="default", n_splits=5, n_draws=12, n_test=100)
    sizes = [kw["n_draws"] for _, kw in jobs]
    assert sum(sizes) == 12 and max(sizes) == harness.TRUTH_CHUNK
    assert len({kw["seed"] for _, kw in jobs}) == len(jobs)
    again = harness.truth_chunks(spec, probe="default", n_splits=5, n_draws=12, n_test=100)
    assert [kw["seed"] for _, kw in again] == [kw["seed"] for _, kw in jobs]

    rng = np.random.default_rng(0)
    chunks = [{side: {"harrell_c": rng.normal(0.6, 0.05, size)} for side in ("A", "B")}
              for size in sizes]
    out = harness.combine_truth(chunks)
    for side in ("A", "B"):
        every = np.concatenate([c[side]["harrell_c"] for c in chunks])
        assert out[side]["harrell_c"] == pytest.approx(every.mean())
        assert out["mcse"][f"{side}:harrell_c"] == pytest.approx(
            every.std(ddof=1) / np.sqrt(every.size))
    assert harness.combine_truth([{}, {}]) == {"A": {}, "B": {}}   # the exact null
