"""demo_summary on a small store with known numbers (no torch, no pretraining).

The store holds hand-made patients, probe/compare/survival/invariance/stability run
tables and a cohort card; every sentence's numbers must be those numbers, and every
stored number the summary uses must equal a plain SQL query on the store.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import pyarrow as pa
import pytest

from neurofeat.runs.demo import DemoCapabilities, DemoClock, demo_plan, demo_settings
from neurofeat.runs.demo_summary import DemoSummary, demo_summary
from neurofeat.store import Store, connect, write_run, write_tables
from neurofeat.store.schema import PATIENTS_SCHEMA, run_table_schema

SITES = {"siteA": 20, "siteB": 12, "siteC": 8}


def _table(command: str, table: str, rows: list[dict]) -> pd.DataFrame:
    """Rows with every declared column (None where a row does not say)."""
    names = [n for n in run_table_schema(command, table).names
             if n not in ("run_id", "neurofeat_version", "created_at")]
    return pd.DataFrame([{name: row.get(name) for name in names} for row in rows])


def _metric(backbone: str, task: str, estimate: float, low: float, high: float, *,
            protocol: str = "cv", site: str = "all", command: str = "probe", metric: str = "auc",
            primary: bool = True, probe: str = "linear") -> dict:
    return {"command": command, "backbone": backbone, "perturbation": "none", "task": task,
            "protocol": protocol, "probe": probe if command == "probe" else None,
            "model": "coxnet" if command == "survival" else None, "site": site, "metric": metric,
            "n": 40, "estimate": estimate, "ci_low": low, "ci_high": high, "ci_method": "calibrated-t",
            "ci_level": 0.95, "primary": primary, "fraction": 1.0 if command == "probe" else None}


def _test(task: str, a: str, b: str, ea: float, eb: float, *, protocol: str = "cv", site: str = "all",
          pooled: bool = False, p: float = 0.5, p_holm: float = 0.8, primary: bool = True,
          metric: str = "auc") -> dict:
    return {"task": task, "metric": metric, "site": site, "protocol": protocol, "backbone_a": a,
            "backbone_b": b, "pooled": pooled, "estimate_a": ea, "ci_low_a": ea - 0.1, "ci_high_a": ea + 0.1,
            "estimate_b": eb, "ci_low_b": eb - 0.1, "ci_high_b": eb + 0.1, "diff": ea - eb,
            "diff_ci_low": ea - eb - 0.05, "diff_ci_high": ea - eb + 0.05, "ci_level": 0.95,
            "test": "calibrated-t", "p_value": p, "p_holm": p_holm, "primary": primary,
            "perturbation": "none", "comparison": "requested"}


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    store = Store.open(root / "store", create=True)
    ids = [f"P{i:03d}" for i in range(sum(SITES.values()))]
    sites = [site for site, k in SITES.items() for _ in range(k)]
    patients = pd.DataFrame({"patient_id": ids, "site": sites, "cohort": "synthetic", "age": 50.0,
                             "sex": "F", "grade": 4, "histology": "glioblastoma", "ingest_run_id": "x",
                             "ingested_at": pd.Timestamp("2026-01-01", tz="UTC")})
    write_tables(store, {"patients": pa.Table.from_pandas(patients, schema=PATIENTS_SCHEMA,
                                                          preserve_index=False)})
    probes = [
        _metric("oracle", "idh1", 0.93, 0.88, 0.97), _metric("random", "idh1", 0.52, 0.41, 0.63),
        _metric("radiomics", "idh1", 0.87, 0.80, 0.93),
        _metric("radiomics", "idh1", 0.20, 0.10, 0.30, primary=False),  # published row: not used
        _metric("radiomics", "idh1", 0.30, 0.20, 0.40, probe="knn"),  # kNN: not used
        _metric("dino", "idh1", 0.60, 0.50, 0.70),  # compared with its twin: the comparison is used
        _metric("oracle", "mgmt", 0.70, 0.6, 0.8), _metric("oracle", "mgmt", 0.66, 0.5, 0.8,
                                                           protocol="loso", site="siteC"),
        _metric("radiomics", "mgmt", 0.80, 0.7, 0.9), _metric("radiomics", "mgmt", 0.30, 0.1, 0.5,
                                                              protocol="loso", site="siteC"),
    ]
    write_run(store, "probe", {"metrics": _table("probe", "metrics", probes)})
    tests = [
        _test("idh1", "dino", "dino_dro", 0.74, 0.70), _test("idh1", "mae", "mae_dro", 0.55, 0.58),
        _test("idh1", "base", "dro", 0.645, 0.64, pooled=True, p=0.9, p_holm=1.0),
        _test("mgmt", "dino", "dino_dro", 0.82, 0.75), _test("mgmt", "mae", "mae_dro", 0.78, 0.71),
        _test("mgmt", "base", "dro", 0.80, 0.73, pooled=True, p=0.001, p_holm=0.004),
        _test("mgmt", "base", "dro", 0.0, 0.0, pooled=True, p=0.0001, p_holm=0.0001, primary=False),
    ]
    write_run(store, "stats-compare", {"tests": _table("stats-compare", "tests", tests)})
    loso = [_test("mgmt", "dino", "dino_dro", 0.35, 0.45, protocol="loso", site="siteC"),
            _test("mgmt", "mae", "mae_dro", 0.41, 0.47, protocol="loso", site="siteC"),
            _test("mgmt", "base", "dro", 0.5, 0.55, protocol="loso", pooled=True, p=0.2, p_holm=0.3)]
    write_run(store, "stats-compare", {"tests": _table("stats-compare", "tests", loso)})
    inv = [{"backbone": b, "family": None, "by": "site", "metric": "site_probe_ba", "estimate": e,
            "ci_low": e - 0.1, "ci_high": e + 0.1, "ci_method": "corrected-t-kdf", "ci_level": 0.95,
            "chance": 1 / 3, "n": 40, "n_groups": 3, "perturbation": "none"}
           for b, e in (("dino", 0.9), ("dino_dro", 0.7), ("mae", 0.8), ("mae_dro", 0.86), ("oracle", 0.34))]
    inv += [{"backbone": "dino", "by": "site", "metric": "silhouette", "estimate": 0.3, "perturbation": "none"}]
    write_run(store, "invariance", {"invariance": _table("invariance", "invariance", inv)})
    surv = [_metric("oracle", "os", 0.61, 0.55, 0.67, command="survival", metric="harrell_c"),
            _metric("oracle", "os", 0.58, 0.4, 0.7, command="survival", metric="harrell_c", site="siteA"),
            _metric("oracle", "os", 0.66, 0.5, 0.8, command="survival", metric="harrell_c", site="siteB")]
    write_run(store, "survival", {"metrics": _table("survival", "metrics", surv)})
    stab = [{"backbone": "dino", "task": "idh1", "perturbation": p, "kind": p.split("-")[0], "strength": 0.3,
             "metric": "auc", "n": 40, "estimate": e, "ci_low": e - 0.1, "ci_high": e + 0.1,
             "delta": d, "delta_ci_low": d - 0.02, "delta_ci_high": d + 0.02}
            for p, e, d in (("none", 0.74, 0.0), ("gibbs-0.3", 0.70, -0.04), ("bias-0.3", 0.73, -0.01))]
    write_run(store, "stability", {"stability": _table("stability", "stability", stab)})
    cohort = root / "cohort"
    cohort.mkdir()
    card = {"n": 40, "shortcut": {"settings": {"strength": 0.8, "markers": ["mgmt"]}, "expected_auc": [
        {"marker": "mgmt", "site": "siteA", "role": "train", "auc_spurious_only": 0.9, "auc_causal_only": 0.7},
        {"marker": "mgmt", "site": "siteB", "role": "train", "auc_spurious_only": 0.92, "auc_causal_only": 0.64},
        {"marker": "mgmt", "site": "siteC", "role": "held_out", "auc_spurious_only": 0.05,
         "auc_causal_only": 0.62}]}}
    (cohort / "synth.json").write_text(json.dumps(card))
    return store


def test_summary_numbers_are_the_stored_numbers(demo_store):
    summary = demo_summary(demo_store)
    con = connect(demo_store)
    assert summary.synthetic and summary.n_patients == 40 and summary.sites == ("siteA", "siteB", "siteC")
    # reference backbones: the primary linear-probe rows, not the published or kNN rows
    for backbone in ("oracle", "random", "radiomics"):
        stored = con.execute(f"SELECT estimate FROM results WHERE backbone = '{backbone}' AND task = 'idh1' "
                         "AND \"primary\" AND probe = 'linear' AND site = 'all'").fetchone()[0]
        assert summary.score(backbone, "idh1").estimate == stored
    # learnt backbones: both sides of the comparison rows (not dino's own probe run)
    assert summary.score("dino", "idh1").estimate == 0.74
    assert summary.score("dino_dro", "idh1").estimate == con.execute(
        "SELECT estimate_b FROM comparisons WHERE backbone_b = 'dino_dro' AND task = 'idh1'").fetchone()[0]
    # separability: family means = AVG over the stored rows
    base_mean = con.execute("SELECT avg(estimate) FROM run_invariance WHERE metric = 'site_probe_ba' "
                        "AND backbone IN ('dino', 'mae')").fetchone()[0]
    assert summary.family_separability("base") == pytest.approx(base_mean, abs=1e-12)
    assert summary.family_separability("dro") == pytest.approx(0.78, abs=1e-12)
    # differences: the family's primary pooled rows only
    cv = [d for d in summary.differences if d.protocol == "cv"]
    assert [(d.task, d.backbone_a, d.backbone_b) for d in cv] == [("idh1", "base", "dro"), ("mgmt", "base", "dro")]
    assert cv[1].diff == con.execute("SELECT diff FROM comparisons WHERE pooled AND \"primary\" AND task = 'mgmt' "
                                 "AND protocol = 'cv'").fetchone()[0]
    assert cv[1].significant and not cv[0].significant
    # shortcut: CV over all sites against the held-out site, family = mean of members
    base = next(r for r in summary.shortcut if r.backbone == "base")
    assert base.cv_auc == pytest.approx((0.82 + 0.78) / 2) and base.held_out_auc == pytest.approx((0.35 + 0.41) / 2)
    assert base.n_members == 2 and summary.held_out_site == "siteC"
    radiomics = next(r for r in summary.shortcut if r.backbone == "radiomics")
    assert (radiomics.cv_auc, radiomics.held_out_auc) == (0.80, 0.30)
    assert [s.site for s in summary.survival] == ["all", "siteA", "siteB"]
    assert [(s.perturbation, s.delta) for s in summary.stability] == [("bias-0.3", -0.01), ("gibbs-0.3", -0.04)]


def test_sentences_say_found_against_planted(demo_store):
    text = "\n".join(demo_summary(demo_store).sentences())
    assert "SYNTHETIC cohort" in text and "40 patients at 3 sites" in text
    assert "IDH1 (planted in the tumour's appearance) was found by radiomics 0.87" in text
    assert "oracle 0.93" in text and "random 0.52" in text
    # planted shortcut from the card: training-site mean and held-out site
    assert "only the scanner would score AUC 0.91 at the training sites and 0.05 at the held-out siteC" in text
    assert "base 0.80 → 0.38" in text and "radiomics 0.80 → 0.30" in text
    assert ("DRO reduced site separability in 1 of 2 pairs: site-probe balanced accuracy base 0.85 vs "
            "dro 0.78 (mean over the pairs; chance 0.33); references oracle 0.34.") in text
    assert "1 of 2 task(s) differ (Holm p < 0.05): mgmt auc +0.070" in text
    assert "leave-one-site-out" in text and "no task differs" in text
    assert "oracle 0.61 [0.55, 0.67] (siteA 0.58, siteB 0.66)" in text
    assert "dino gibbs-0.3 -0.040" in text


def test_summary_of_a_store_with_no_analyses_says_so(tmp_path):
    store = Store.open(tmp_path / "store", create=True)
    summary = demo_summary(store)
    assert isinstance(summary, DemoSummary) and not summary.synthetic and summary.n_patients == 0
    text = " ".join(summary.sentences())
    assert "no probe or comparison" in text and "not measured" in text and "not compared" in text


def test_plan_full_and_quick():
    full = demo_plan(demo_settings("d"))
    lines = [step.command_line() for step in full.steps]
    assert sum(line.startswith("neurofeat pretrain") for line in lines) == 8
    assert all("--recipe cpu-demo" in line for line in lines if line.startswith("neurofeat pretrain"))
    assert "neurofeat synth --out d/cohort --n 240 --size 32 --spacing 6 --seed 0 --shortcut 0.8 " \
           "--shortcut-markers mgmt" in lines
    assert any(line.startswith("neurofeat stats compare base dro --task all") and "loso" in line for line in lines)
    assert any(line.startswith("neurofeat stats compare base dro --task all") and "loso" not in line
               for line in lines)
    assert any("extract --backbone dino " in line and "--perturb none,gibbs:0.3,bias:0.3,contrast:1.5" in line
               for line in lines)
    assert lines[-1] == ("neurofeat report --store d/store --out d/report.html "
                         "--title 'neurofeat demo on a synthetic cohort (240 patients)'")
    quick = demo_settings("d", quick=True, shortcut=False)
    assert (quick.n, quick.methods, quick.epochs, quick.shortcut) == (120, ("dino",), 1, 0.0)
    plan = demo_plan(quick, DemoCapabilities(report=False, radiomics_library=False, loso_compare=False))
    lines = [step.command_line() for step in plan.steps]
    assert not any("--shortcut" in line for line in lines)
    assert not any("report" in line or "radiomics" in line for line in lines)
    assert {what for what, _ in plan.skipped} == {"HTML report", "radiomics backbone",
                                                  "leave-one-site-out comparison"}


def test_capabilities_from_the_command_line_surface():
    surface = {"pretrain": {"--recipe"}, "extract": {"--name"}, "stats compare": {"--task"}}
    cap = DemoCapabilities.from_surface(surface)
    assert cap.recipe and cap.reference_backbones and not cap.loso_compare and not cap.report


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"methods": "dino,clip"}, "unknown clip"), ({"n": 10}, "at least 30"), ({"epochs": 0}, "--epochs 0")])
def test_settings_refuse_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        demo_settings("d", **kwargs)


def test_summary_module_does_not_import_torch():
    import subprocess

    code = "import sys, neurofeat.runs.demo, neurofeat.runs.demo_summary; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_a_planted_shortcut_the_summary_says_so(demo_store, tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "synth.json").write_text(json.dumps({"n": 40, "shortcut": None}))
    summary = demo_summary(demo_store, cohort)
    assert summary.synthetic and summary.shortcut_strength == 0.0 and summary.held_out_site is None
    assert summary.shortcut == () and summary.planted_shortcut == ()
    assert any("No site shortcut was planted" in s for s in summary.sentences())


def test_clock_adds_wall_and_cpu_time_per_stage():
    plan = demo_plan(demo_settings("d", quick=True))
    clock = DemoClock()
    for _ in range(2):
        with clock.stage("pretrain"):
            sum(i * i for i in range(200_000))  # some CPU
    wall, cpu = clock.stages["pretrain"]
    assert wall > 0 and cpu > 0
    assert clock.heading(1, plan).startswith(f"[1/{len(plan.steps)}] synthetic cohort  (0 min ")
    assert clock.closing().startswith("demo finished in 0 min ") and "pretrain " in clock.closing()
