"""The whole workflow end to end, exactly as the README's first command runs it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from neurofeat.cli import app
from neurofeat.store import Store, connect


@pytest.mark.slow
@pytest.mark.torch
def test_demo_runs_every_stage_and_leaves_queryable_results(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    con = connect(Store.open(tmp_path / "demo" / "store"))
    assert con.sql("SELECT count(*) FROM patients").fetchall() == [(120,)]
    backbones = con.sql("SELECT backbone, count(*) FROM embeddings GROUP BY 1 ORDER BY 1").fetchall()
    assert backbones == [("dino", 120), ("dino_dro", 120)]
    commands = {row[0] for row in con.sql("SELECT DISTINCT command FROM results").fetchall()}
    assert {"probe", "survival"} <= commands
    pairs = con.sql("SELECT DISTINCT backbone_a, backbone_b FROM comparisons").fetchall()
    assert ("dino", "dino_dro") in pairs
    # every stored number is traceable to its checkpoint and preprocessing
    assert con.sql(
        "SELECT count(*) FROM results WHERE command = 'probe' AND (checkpoint_sha256 IS NULL OR preprocess_sha256 IS NULL)"
    ).fetchall() == [(0,)]
    assert list((tmp_path / "demo" / "store" / "runs").glob("survival-*/*.png"))


def test_demo_refuses_unknown_methods(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--methods", "dino,clip"])
    assert result.exit_code == 1 and "unknown" in result.output
