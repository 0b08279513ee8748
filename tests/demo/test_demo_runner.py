"""The demo's side-by-side runner: dependency order, at most ``jobs`` at once, failures.

The commands are a small Python script standing in for ``python -m neurofeat``: it
appends ``start``/``end`` lines with a timestamp to a journal, sleeps, and exits with
the status its arguments ask for.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from neurofeat.runs.demo import DemoPlan, DemoStep, demo_plan, demo_settings
from neurofeat.runs.demo_runner import THREAD_VARIABLES, run_plan, single_thread_env

SCRIPT = """
import os, sys, time
name, seconds, status, journal = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def note(what):
    with open(journal, "a") as f:
        f.write(f"{what} {name} {time.monotonic()} {os.environ.get('OMP_NUM_THREADS')}\\n")
note("start")
print("output of", name, flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    pass  # busy, so that the CPU time is measurable
note("end")
sys.exit(status)
"""


def _plan(tmp_path: Path, spec: list[tuple[str, float, int, tuple[int, ...]]]) -> DemoPlan:
    journal = tmp_path / "journal.txt"
    steps = tuple(DemoStep("stage", name, (name, str(seconds), str(status), str(journal)), after)
                  for name, seconds, status, after in spec)
    return DemoPlan(settings=demo_settings(tmp_path / "demo", jobs=2), steps=steps)


def _journal(tmp_path: Path) -> dict[tuple[str, str], float]:
    events = {}
    for line in (tmp_path / "journal.txt").read_text().splitlines():
        what, name, stamp, threads = line.split()
        events[what, name] = float(stamp)
        assert threads == "1"  # every command runs with one thread
    return events


def _run(plan, tmp_path, jobs):
    started: list[int] = []
    outcomes = run_plan(plan, jobs, tmp_path / "logs", on_start=started.append,
                        command=(sys.executable, "-c", SCRIPT), poll=0.02)
    return started, outcomes


def test_steps_wait_for_what_they_read_and_run_side_by_side(tmp_path):
    plan = _plan(tmp_path, [("a", 0.3, 0, ()), ("b", 0.3, 0, ()), ("c", 0.1, 0, (0,)),
                            ("d", 0.1, 0, (0, 1, 2))])
    assert plan.ready(set(), set()) == [0, 1]
    assert plan.ready({0}, {0, 1}) == [2] and plan.ready({0, 1}, {0, 1, 2}) == []
    started, outcomes = _run(plan, tmp_path, jobs=2)
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3] and all(o.ok for o in outcomes)
    t = _journal(tmp_path)
    assert t["start", "c"] >= t["end", "a"]
    assert t["start", "d"] >= max(t["end", "a"], t["end", "b"], t["end", "c"])
    assert t["start", "b"] < t["end", "a"]  # a and b overlapped
    a = next(o for o in outcomes if o.index == 0)
    assert a.wall >= 0.3 and 0 < a.cpu <= a.wall + 0.5  # this process's own CPU time
    log = a.log.read_text()
    assert log.startswith("$ neurofeat a 0.3 0 ") and "output of a" in log


def test_never_more_than_jobs_at_once(tmp_path):
    plan = _plan(tmp_path, [(name, 0.15, 0, ()) for name in "abcde"])
    _run(plan, tmp_path, jobs=2)
    t = _journal(tmp_path)
    for name in "abcde":  # at each start, at most one other step is running
        at = t["start", name]
        others = [o for o in "abcde" if o != name and t["start", o] <= at < t["end", o]]
        assert len(others) <= 1, (name, others)


def test_a_failure_stops_new_steps_and_is_returned_with_its_log(tmp_path):
    plan = _plan(tmp_path, [("ok", 0.4, 0, ()), ("bad", 0.05, 3, ()), ("later", 0.05, 0, ()),
                            ("needs-bad", 0.05, 0, (1,))])
    started, outcomes = _run(plan, tmp_path, jobs=2)
    assert sorted(started) == [0, 1]  # nothing started after the failure...
    assert {o.index: o.returncode for o in outcomes} == {0: 0, 1: 3}  # ...the running one finished
    bad = next(o for o in outcomes if o.index == 1)
    assert not bad.ok and "output of bad" in bad.log_tail()


def test_one_job_runs_in_plan_order(tmp_path):
    plan = _plan(tmp_path, [("a", 0.05, 0, ()), ("b", 0.05, 0, ()), ("c", 0.05, 0, ())])
    started, _ = _run(plan, tmp_path, jobs=1)
    assert started == [0, 1, 2]
    with pytest.raises(ValueError, match="jobs must be 1 or more"):
        run_plan(plan, 0, tmp_path / "logs")


def test_single_thread_env():
    env = single_thread_env({"PATH": "/bin", "OMP_NUM_THREADS": "8"})
    assert all(env[name] == "1" for name in THREAD_VARIABLES) and env["PATH"] == "/bin"


def test_full_plan_dependencies():
    plan = demo_plan(demo_settings("d"))
    titles = [step.title for step in plan.steps]
    index = {title: i for i, title in enumerate(titles)}
    # an encoder is extracted after its pretraining, compared after every encoder's extraction
    assert index["pretrain dino"] in plan.steps[index["extract dino (clean and perturbed)"]].after
    compare = plan.steps[index["stats compare base dro --task all"]]
    assert {index[f"extract {m}"] for m in ("byol", "byol_dro", "mae", "moco_dro")} <= set(compare.after)
    # the invariance step reads every backbone, the report every run
    invariance = plan.steps[index["site invariance of every backbone"]]
    assert index["IBSI radiomics (the classical baseline)"] in invariance.after
    assert plan.steps[-1].after == tuple(range(len(plan.steps) - 1))
    # every prerequisite comes earlier in the plan, so the plan order is a valid order
    assert all(j < i for i, step in enumerate(plan.steps) for j in step.after)
    # right after ingest, the oracle, the eight pretrainings and the two references may start
    ready = plan.ready({0, 1}, {0, 1})
    assert len(ready) == 11 and ready[0] == index["oracle (true latent traits, a ceiling)"]
