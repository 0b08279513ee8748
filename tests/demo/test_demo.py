"""``neurofeat demo --quick`` end to end, exactly as a user runs it (the suite's one long test).

The summary it prints must be made of stored numbers: each number the summary holds is
checked against a plain SQL query on the store the demo leaves, and each sentence is
checked to appear in the demo's output.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from neurofeat.cli import app
from neurofeat.cli.demo import _surface
from neurofeat.runs.demo_summary import demo_summary
from neurofeat.store import Store, connect

N_PATIENTS = 60


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--n", str(N_PATIENTS)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
@pytest.mark.torch
def test_quick_demo_runs_every_stage(quick_demo):
    out, output = quick_demo
    assert "This demo runs on a SYNTHETIC cohort" in output
    con = connect(Store.open(out / "store"))
    assert con.execute("SELECT count(*) FROM patients").fetchone() == (N_PATIENTS,)
    embedded = dict(con.execute("SELECT backbone, count(DISTINCT patient_id) FROM embeddings "
                                "WHERE perturbation = 'none' GROUP BY 1").fetchall())
    assert {"dino", "dino_dro", "oracle"} <= set(embedded) and set(embedded.values()) == {N_PATIENTS}
    surface = _surface()
    if "--name" in surface["extract"]:
        assert "random" in embedded
    perturbed = {row[0] for row in con.execute(
        "SELECT DISTINCT perturbation FROM embeddings WHERE backbone = 'dino'").fetchall()}
    assert perturbed == {"none", "gibbs-0.3"}
    commands = {row[0] for row in con.execute("SELECT DISTINCT command FROM runs").fetchall()}
    assert {"pretrain", "extract", "probe", "stats-compare", "survival", "invariance", "calibrate", "explain",
            "stability"} <= commands
    protocols = {row[0] for row in con.execute(
        "SELECT DISTINCT protocol FROM comparisons WHERE \"primary\"").fetchall()}
    assert "cv" in protocols and ("loso" in protocols or "--protocol" not in surface["stats compare"])
    # every stored number traces to its checkpoint and preprocessing
    assert con.execute("SELECT count(*) FROM results WHERE command = 'probe' AND "
                       "(checkpoint_sha256 IS NULL OR preprocess_sha256 IS NULL)").fetchone() == (0,)
    if "report" in surface:
        assert (out / "report.html").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.torch
def test_quick_demo_summary_is_made_of_stored_numbers(quick_demo):
    out, output = quick_demo
    summary = demo_summary(out / "store")
    flat = " ".join(output.split())
    for sentence in summary.sentences():  # printed word for word
        assert " ".join(sentence.split()) in flat, sentence
    con = connect(Store.open(out / "store"))
    # the learnt pair's IDH1 AUC = both sides of the stored primary comparison
    a, b = con.execute(
        "SELECT estimate_a, estimate_b FROM comparisons WHERE \"primary\" AND task = 'idh1' AND metric = 'auc' "
        "AND protocol = 'cv' AND site = 'all' AND backbone_a = 'dino' AND backbone_b = 'dino_dro'").fetchone()
    assert (summary.score("dino", "idh1").estimate, summary.score("dino_dro", "idh1").estimate) == (a, b)
    # the reference backbones' = the primary linear-probe rows of the results view
    for backbone, estimate in con.execute(
            "SELECT backbone, estimate FROM results WHERE command = 'probe' AND \"primary\" AND task = 'idh1' "
            "AND protocol = 'cv' AND site = 'all' AND metric = 'auc' AND probe <> 'knn' "
            "AND backbone IN ('oracle', 'random', 'radiomics')").fetchall():
        assert summary.score(backbone, "idh1").estimate == estimate
    # the shortcut: planted numbers from the cohort card, found numbers from the store
    card = json.loads((out / "cohort" / "synth.json").read_text())["shortcut"]["expected_auc"]
    assert [(p.site, p.auc_spurious_only) for p in summary.planted_shortcut] == [
        (e["site"], e["auc_spurious_only"]) for e in card]
    held_out = summary.held_out_site
    assert held_out == "siteC"
    for readout in summary.shortcut:
        stored = con.execute(
            "SELECT estimate FROM results WHERE \"primary\" AND task = 'mgmt' AND protocol = 'loso' "
            "AND site = ? AND backbone = ? AND metric = 'auc' AND command = 'probe'",
            [held_out, readout.backbone]).fetchall() or con.execute(
            "SELECT estimate_a FROM comparisons WHERE \"primary\" AND task = 'mgmt' AND protocol = 'loso' "
            "AND site = ? AND backbone_a = ? AND metric = 'auc'", [held_out, readout.backbone]).fetchall() or \
            con.execute(
            "SELECT estimate_b FROM comparisons WHERE \"primary\" AND task = 'mgmt' AND protocol = 'loso' "
            "AND site = ? AND backbone_b = ? AND metric = 'auc'", [held_out, readout.backbone]).fetchall()
        assert stored and readout.held_out_auc == stored[0][0]
        assert f"{readout.backbone} {readout.cv_auc:.2f} → {readout.held_out_auc:.2f}" in flat
    # site separability = the run_invariance rows
    for row in summary.separability:
        assert con.execute("SELECT estimate FROM run_invariance WHERE backbone = ? AND metric = 'site_probe_ba'",
                           [row.backbone]).fetchone()[0] == row.estimate


def test_demo_refuses_unknown_methods(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--methods", "dino,clip"])
    assert result.exit_code == 1 and "unknown clip" in result.output


def test_demo_refuses_an_existing_store(tmp_path):
    Store.open(tmp_path / "store", create=True)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "already holds a store" in result.output


def test_demo_prints_every_step_its_command_and_the_summary(tmp_path, monkeypatch):
    # the orchestration alone (no command runs): headings, command lines, summary, timing
    import neurofeat.cli.demo as demo_cli

    ran: list[tuple[str, ...]] = []

    def fake_run(args, title):
        ran.append(tuple(args))
        if args[0] == "ingest":
            Store.open(tmp_path / "demo" / "store", create=True)

    monkeypatch.setattr(demo_cli, "_run", fake_run)
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo"), "--jobs", "1"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert ran[0][:3] == ("synth", "--out", str(tmp_path / "demo" / "cohort"))
    assert f"[1/{len(ran)}] synthetic cohort" in result.output and f"[{len(ran)}/{len(ran)}]" in result.output
    assert "$ neurofeat " + " ".join(ran[1]) in result.output
    assert "What was planted, what was found" in result.output and "demo finished in" in result.output
