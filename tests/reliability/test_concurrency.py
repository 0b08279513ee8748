"""Concurrent writers and readers of one store, as separate processes.

Each trial starts its processes, lets them import everything, then releases them at
once (a "go" file), so that they race on the check-then-commit itself. Audit item 2:
two ingests used to register the same patients twice (3 of 6 trials into a new store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from reliability_helpers import (
    CKPT_A,
    PRE,
    embeddings,
    make_store,
    patient_ids,
    plain_rows,
    write_clinical_csv,
    write_features_csv,
)

from neurofeat.store import Store, append_embeddings, read_table
from neurofeat.store.validate import validate_store

pytestmark = pytest.mark.slow

# Trials per race (the audit ran 6 + 6 ingest races).
N_TRIALS = 6

_WORKER = textwrap.dedent("""
    import json, os, sys, time, traceback
    from pathlib import Path
    from typer.testing import CliRunner
    from neurofeat.cli import app
    import neurofeat.ingest, neurofeat.store.importing, neurofeat.store.validate  # warm up
    folder, me = Path(sys.argv[1]), sys.argv[2]
    runner = CliRunner()
    (folder / f"ready-{me}").touch()
    trial = 0
    while True:
        job = folder / f"job-{trial}-{me}.json"
        while not job.exists():
            time.sleep(0.002)
        spec = json.loads(job.read_text())
        if spec.get("stop"):
            break
        while not (folder / f"go-{trial}").exists():
            time.sleep(0.001)
        if "cli" in spec:
            result = runner.invoke(app, spec["cli"])
            code, output = result.exit_code, result.output
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                code = 2
                output += "".join(traceback.format_exception(result.exception))
        else:
            try:
                exec(spec["py"], {})
                code, output = 0, ""
            except Exception:
                code, output = 2, traceback.format_exc()
        tmp = folder / f".result-{trial}-{me}"
        tmp.write_text(json.dumps({"code": code, "output": output}))
        os.replace(tmp, folder / f"result-{trial}-{me}.json")
        trial += 1
""")


class Workers:
    """Two long-lived worker processes (imports paid once) that run one job each per
    trial, released together by a "go" file so that they race."""

    def __init__(self, folder: Path, n: int = 2) -> None:
        self.folder = folder
        self.trial = 0
        script = folder / "worker.py"
        script.write_text(_WORKER)
        self.procs = [subprocess.Popen([sys.executable, str(script), str(folder), str(k)]) for k in range(n)]
        deadline = time.monotonic() + 120
        while not all((folder / f"ready-{k}").exists() for k in range(n)):
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.01)

    def start(self, jobs: list[dict]) -> int:
        trial = self.trial
        for k, job in enumerate(jobs):
            self._post(f"job-{trial}-{k}.json", job)
        (self.folder / f"go-{trial}").touch()
        self.trial += 1
        return trial

    def _post(self, name: str, job: dict) -> None:
        tmp = self.folder / f".{name}"
        tmp.write_text(json.dumps(job))
        os.replace(tmp, self.folder / name)  # a worker never reads half a job

    def done(self, trial: int) -> bool:
        assert all(proc.poll() is None for proc in self.procs), "a worker died"
        return all((self.folder / f"result-{trial}-{k}.json").exists() for k in range(len(self.procs)))

    def wait(self, trial: int) -> list[dict]:
        deadline = time.monotonic() + 120
        while not self.done(trial):
            assert time.monotonic() < deadline, "a worker hangs"
            time.sleep(0.005)
        return [json.loads((self.folder / f"result-{trial}-{k}.json").read_text()) for k in range(len(self.procs))]

    def race(self, *commands: list) -> list[dict]:
        return self.wait(self.start([{"cli": [str(a) for a in command]} for command in commands]))

    def stop(self) -> None:
        for k in range(len(self.procs)):
            self._post(f"job-{self.trial}-{k}.json", {"stop": True})
        for proc in self.procs:
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    pool = Workers(tmp_path_factory.mktemp("workers"))
    yield pool
    pool.stop()


@pytest.mark.parametrize("trial", range(N_TRIALS))
def test_two_ingests_of_the_same_cohort_into_a_new_store_register_it_once(workers, tmp_path, trial):
    clinical = write_clinical_csv(tmp_path / "c.csv", patient_ids(20, "NEW"))
    store = tmp_path / "S"
    results = workers.race(["ingest", "--clinical", clinical, "--store", store], ["ingest", "--clinical", clinical, "--store", store])
    codes = sorted(r["code"] for r in results)
    assert codes == [0, 1], [r["output"][-800:] for r in results]
    refused = next(r["output"] for r in results if r["code"] == 1)
    assert any(reason in refused for reason in ("already registered", "already in the store", "already running")), \
        refused[:300]
    opened = Store.open(store)
    assert read_table(opened, "patients").num_rows == 20 and validate_store(opened).ok


@pytest.mark.parametrize("trial", range(N_TRIALS))
def test_two_ingests_of_overlapping_cohorts_into_a_store_register_each_patient_once(workers, tmp_path, trial):
    store = make_store(tmp_path / "S")
    first = write_clinical_csv(tmp_path / "a.csv", patient_ids(10, "NEW"))
    second = write_clinical_csv(tmp_path / "b.csv", patient_ids(10, "NEW")[5:] + patient_ids(5, "OTHER"))
    results = workers.race(["ingest", "--clinical", first, "--store", store.root],
                           ["ingest", "--clinical", second, "--store", store.root])
    assert sorted(r["code"] for r in results) == [0, 1], [r["output"][-800:] for r in results]
    ids = read_table(store, "patients")["patient_id"].to_pylist()
    assert len(ids) == len(set(ids)) and validate_store(Store.open(store.root)).ok


def test_two_ingests_of_disjoint_cohorts_both_commit(workers, tmp_path):
    store = make_store(tmp_path / "S")
    first = write_clinical_csv(tmp_path / "a.csv", patient_ids(10, "A"))
    second = write_clinical_csv(tmp_path / "b.csv", patient_ids(10, "B"))
    results = workers.race(["ingest", "--clinical", first, "--store", store.root],
                           ["ingest", "--clinical", second, "--store", store.root])
    assert [r["code"] for r in results] == [0, 0], [r["output"][-800:] for r in results]
    assert read_table(store, "patients").num_rows == 12 + 20 and validate_store(Store.open(store.root)).ok


@pytest.mark.parametrize("trial", range(3))
def test_two_imports_of_one_backbone_store_each_patient_once(workers, tmp_path, trial):
    store = make_store(tmp_path / "S")
    table = write_features_csv(tmp_path / "f.csv", patient_ids())
    command = ["store", "import", "--backbone", "rad", "--table", table, "--store", store.root]
    results = workers.race(command, command)
    assert 0 in [r["code"] for r in results], [r["output"][-800:] for r in results]
    for result in results:
        assert result["code"] == 0 or "already running" in result["output"], result["output"]
    rows = plain_rows(store.root, "embeddings")
    assert rows.num_rows == 12 and len(set(rows["patient_id"].to_pylist())) == 12
    assert validate_store(Store.open(store.root)).ok


def test_plain_readers_never_see_part_of_an_append(workers, tmp_path):
    """A writer appends 8 commits of 5 patients (2 batches each) to one backbone while
    this process reads the folder with pyarrow: every count is a multiple of 5."""
    store = make_store(tmp_path / "S", n=40)
    appender = textwrap.dedent(f"""
        import numpy as np
        from neurofeat.store import Store, EmbeddingWriter
        store = Store.open({str(store.root)!r})
        ids = [f"P{{i:03d}}" for i in range(40)]
        for k in range(8):
            with EmbeddingWriter(store, "dino", checkpoint_sha256={CKPT_A!r}, preprocess_sha256={PRE!r}) as writer:
                chunk = ids[5 * k: 5 * k + 5]
                writer.write_batch(chunk[:3], np.ones((3, 4)))
                writer.write_batch(chunk[3:], np.ones((2, 4)))
    """)
    trial = workers.start([{"py": appender}, {"py": "pass"}])
    seen = set()
    while not workers.done(trial):
        seen.add(plain_rows(store.root, "embeddings").num_rows)
    assert [r["code"] for r in workers.wait(trial)] == [0, 0]
    seen.add(plain_rows(store.root, "embeddings").num_rows)
    assert all(count % 5 == 0 for count in seen), sorted(seen)
    assert max(seen) == 40 and validate_store(Store.open(store.root)).ok


def test_recovery_run_by_a_reader_never_touches_a_live_commit(workers, tmp_path):
    """Every Store.open recovers; one worker opens the store in a loop while the other
    commits: the live transactions are neither deleted nor finished by the reader."""
    store = make_store(tmp_path / "S", n=30)
    append_embeddings(store, "dino", patient_ids(30), embeddings(30), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    ingester = textwrap.dedent(f"""
        import pyarrow as pa
        from neurofeat.store import Store, write_tables
        store = Store.open({str(store.root)!r})
        try:
            for k in range(10):
                ids = [f"N{{k}}-{{i}}" for i in range(3)]
                write_tables(store, {{"patients": pa.table({{"patient_id": ids, "site": ["s"] * 3}}),
                                      "clinical": pa.table({{"patient_id": ids, "idh1": [True] * 3}})}})
        finally:  # a failed writer must end the reader's loop, not hang it
            (store.root / "writer-done").touch()
    """)
    opener = textwrap.dedent(f"""
        from pathlib import Path
        from neurofeat.store import Store
        root = Path({str(store.root)!r})
        while not (root / "writer-done").exists():
            Store.open(root)
    """)
    results = workers.wait(workers.start([{"py": ingester}, {"py": opener}]))
    assert [r["code"] for r in results] == [0, 0], [r["output"][-800:] for r in results]
    (store.root / "writer-done").unlink()
    assert read_table(store, "patients").num_rows == 30 + 30 and validate_store(Store.open(store.root)).ok
