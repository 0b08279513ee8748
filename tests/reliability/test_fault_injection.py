"""kill -9 at random points of real commits, with a fixed seed.

Each trial copies a small store, starts one of the four transaction kinds (ingest,
store import, extract append, extract --replace) in a child process whose commit steps
are slowed down (as ``strace -e inject=rename:delay_enter=`` did in the audit, so that
the kill lands inside commits often), and SIGKILLs it after a random delay. Then:

- before any recovery, a plain pyarrow reader never sees part of an append (import,
  extract: the embeddings are one file, renamed after the extract_failures rows that
  come with them), and never sees a patient of an ingest without its clinical row;
- opening the store recovers it: the commit is there entirely or not at all, nothing of
  the transaction is left in .staging, and ``store validate`` finds no error;
- a rerun completes the work with one row per key.

Children are forked from a pre-imported server (multiprocessing "forkserver"), so a
trial costs the work, not an interpreter start.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import (
    KINDS,
    N_BASE,
    base_store,
    committed,
    plain_count,
    slow_workload,
    staging_entries,
)

from neurofeat.store import Store
from neurofeat.store.validate import validate_store

pytestmark = pytest.mark.slow

SEED = 15
N_TRIALS = 40
STEP_DELAY_S = 0.03  # per commit step in the child


@pytest.fixture(scope="module")
def forkserver():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["reliability_helpers", "neurofeat.store", "neurofeat.ingest",
                                    "neurofeat.store.importing", "pyarrow.parquet", "pyarrow.dataset"])
    return context


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill-template") / "store"
    base_store(root)
    return root


def _duration(context, kind: str, template: Path, work: Path) -> float:
    """How long the slowed-down child takes to finish ``kind`` undisturbed."""
    root = work / f"timing-{kind}"
    shutil.copytree(template, root)
    start = time.monotonic()
    child = context.Process(target=slow_workload, args=(kind, str(root), str(work), STEP_DELAY_S))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert committed(kind, root) is True
    shutil.rmtree(root)
    return time.monotonic() - start


def test_kill_minus_nine_at_random_points(forkserver, template, tmp_path):
    rng = np.random.default_rng(SEED)
    durations = {kind: _duration(forkserver, kind, template, tmp_path) for kind in KINDS}
    outcomes: Counter[str] = Counter()
    for trial in range(N_TRIALS):
        kind = list(KINDS)[trial % len(KINDS)]
        root = tmp_path / f"trial-{trial}"
        shutil.copytree(template, root)
        child = forkserver.Process(target=slow_workload, args=(kind, str(root), str(tmp_path), STEP_DELAY_S))
        delay = float(rng.uniform(0.0, durations[kind] * 0.95))
        child.start()
        time.sleep(delay)
        if child.exitcode is None:
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:  # it finished (and was reaped) after the check
                pass
        child.join(60)
        finished = child.exitcode == 0
        where = f"trial {trial} ({kind}, kill after {delay:.3f}s)"

        # Before any recovery: what a reader that knows nothing of neurofeat sees.
        seen = committed(kind, root)
        journal_left = bool(list((root / ".staging").glob("txn-*/journal.json")))
        if kind == "import":
            assert seen is not None, f"{where}: a plain reader sees part of an append"
        if kind == "append":  # one embeddings file, renamed after the failures it comes with
            assert plain_count(root, "embeddings", backbone="dino") in (0, 11), f"{where}: part of an append"
        if kind == "ingest":
            new = plain_count(root, "patients") - N_BASE
            assert new in (0, 4) and (new == 0 or plain_count(root, "clinical") == N_BASE + 4), where
        if kind == "append" and plain_count(root, "embeddings", backbone="dino"):
            assert plain_count(root, "extract_failures") == 1, where

        store = Store.open(root)  # recovers
        after = committed(kind, root)
        assert after is not None, f"{where}: half a commit after recovery"
        if journal_left:
            assert after is True, f"{where}: a journalled commit was not rolled forward"
        assert not [e for e in staging_entries(root) if not e.startswith("pending")], where
        report = validate_store(store)
        assert report.ok, f"{where}: {report.to_frame().to_string()}"
        outcomes["finished before the kill" if finished else
                 "rolled forward by recovery" if journal_left else
                 "killed after its commit, before clean-up" if after else
                 "rolled back (killed before the commit point)"] += 1

        # A rerun completes the work, once.
        if not after:
            KINDS[kind](root, tmp_path)
        assert committed(kind, root) is True and validate_store(Store.open(root)).ok, where
        shutil.rmtree(root)
    print(f"\nkill -9 trials: {N_TRIALS} (seed {SEED}): " + ", ".join(f"{v} {k}" for k, v in sorted(outcomes.items())))
    assert sum(outcomes.values()) == N_TRIALS
    assert outcomes["rolled back (killed before the commit point)"] and outcomes["rolled forward by recovery"]
