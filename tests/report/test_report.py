"""`neurofeat report`: sections from what the store holds, absent sections named with their
command, self-contained HTML, aggregates only, atomic writes."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from report_helpers import FAST, SCAN_FOLDER, make_probe_store, visible_text

from neurofeat.cli import app
from neurofeat.runs import probe_run
from neurofeat.runs.report import SECTION_TITLES, build_report, report_run
from neurofeat.runs.report_html import (CONTENT_SECURITY_POLICY, Image, Paragraph, Report,
                                        Section, Table, render_html)
from neurofeat.store import Store, connect, write_tables

RUN_ID = re.compile(r"\b(?:probe|stats-compare|survival|invariance|stability|calibrate|explain)"
                    r"-\d{8}T\d{6}-[0-9a-f]{6}\b")


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def _table(report: Report, caption_start: str) -> Table:
    tables = [b for s in report.sections for b in s.blocks
              if isinstance(b, Table) and b.caption.startswith(caption_start)]
    assert tables, f"no table whose caption starts with {caption_start!r}"
    return tables[0]


# ------------------------------------------------------------------------- full store
def test_full_store_has_every_section(full_report):
    analyses = {k: t for k, t in SECTION_TITLES.items() if k != "findings"}  # findings: demo stores
    assert full_report.sections == tuple(analyses)
    assert full_report.absent == ()
    page = full_report.html
    for key, title in analyses.items():
        assert f'<section id="{key}"><h2>{html.escape(title)}</h2>' in page
    assert "Not in this store" not in page
    images = _images(page)
    blocks = [b for s in full_report.report.sections for b in s.blocks if isinstance(b, Image)]
    assert len(images) == len(blocks) >= 12
    for data in images:
        with PILImage.open(io.BytesIO(data)) as picture:
            assert picture.format == "PNG" and min(picture.size) > 50
    assert full_report.path.read_text(encoding="utf-8") == page


def test_numbers_are_the_stored_primary_rows(full_store, full_report):
    con = connect(full_store)
    auc, low, high, run_id = con.execute(
        "SELECT estimate, ci_low, ci_high, run_id FROM results WHERE command = 'probe' AND "
        "backbone = 'dino' AND task = 'idh1' AND protocol = 'cv' AND probe = 'linear' AND "
        "site = 'all' AND fraction = 1.0 AND metric = 'auc' AND \"primary\"").fetchone()
    table = _table(full_report.report, "idh1: linear probe, cv")
    row = next(r for r in table.rows if r[0] == "dino")
    assert row[1] == f"{auc:.3f} [{low:.3f}, {high:.3f}]"
    assert run_id in row[-1]
    dro = con.execute("SELECT estimate FROM results WHERE command = 'probe' AND backbone = "
                  "'dino_dro' AND task = 'idh1' AND probe = 'linear' AND site = 'all' AND "
                  "fraction = 1.0 AND metric = 'ba' AND \"primary\"").fetchone()[0]
    assert row[4].startswith(f"{dro:.3f} [")
    # a backbone that only stats compare scored: its side of the primary comparison row
    byol = con.execute("SELECT estimate_a, ci_low_a, ci_high_a FROM comparisons WHERE "
                       "\"primary\" AND task = 'idh1' AND backbone_a = 'byol' AND metric = "
                       "'auc' AND site = 'all'").fetchone()
    row = next(r for r in table.rows if r[0] == "byol")
    assert row[1] == f"{byol[0]:.3f} [{byol[1]:.3f}, {byol[2]:.3f}]" and "stats-compare" in row[-1]
    tests = con.execute("SELECT backbone_a, backbone_b, metric, diff, p_value FROM comparisons "
                    "WHERE \"primary\" AND task = 'idh1'").df()
    paired = _table(full_report.report, "idh1: primary paired test")
    assert len(paired.rows) == len(tests)
    shown = {(r[0], r[1]): (r[5].split(" [")[0], r[6]) for r in paired.rows}
    for r in tests.itertuples():
        diff, p = shown[(f"{r.backbone_a} − {r.backbone_b}", r.metric)]
        assert diff == f"{r.diff:.3f}".replace("-", "−")
        assert p == ("< 0.001" if r.p_value < 0.001 else f"{r.p_value:.3f}")
    cindex = _table(full_report.report, "os (cv): c-index")
    harrell = con.execute("SELECT estimate FROM results WHERE command = 'survival' AND site = "
                      "'all' AND metric = 'harrell_c' AND \"primary\"").fetchone()[0]
    assert next(r for r in cindex.rows if r[2] == "all")[5].startswith(f"{harrell:.3f} [")
    # the log-rank p shown is the stored primary one: the permutation p (exact), no dagger
    logrank, method = con.execute(
        "SELECT estimate, ci_method FROM results WHERE command = 'survival' AND site = 'all' "
        "AND metric = 'logrank_p' AND \"primary\"").fetchone()
    assert method.startswith("permutation")
    cell = next(r for r in cindex.rows if r[2] == "all")[7]
    assert cell == ("< 0.001" if logrank < 0.001 else f"{logrank:.3f}")
    assert any("permutation test" in note for note in cindex.notes)
    assert not any(note.startswith("†") for note in cindex.notes)


def test_a_chi_squared_log_rank_row_is_marked():
    from types import SimpleNamespace

    from neurofeat.runs.report import _permutation

    assert _permutation(SimpleNamespace(ci_method="permutation (B=99, outcomes permuted within site)"))
    assert not _permutation(SimpleNamespace(ci_method="median split at training-fold median, repeat 0"))
    assert not _permutation(SimpleNamespace(ci_method=None))


def test_leave_one_site_out_probe_has_a_held_out_site_table(full_store, full_report):
    table = _table(full_report.report, "idh1: linear probe, loso, per site (held-out site)")
    con = connect(full_store)
    stored = con.execute(
        "SELECT site, estimate FROM results WHERE command = 'probe' AND protocol = 'loso' "
        "AND probe = 'linear' AND site <> 'all' AND metric = 'auc' AND \"primary\" "
        "ORDER BY site").fetchall()
    assert [(r[1], r[2].split(" [")[0]) for r in table.rows] == [
        (site, f"{auc:.3f}") for site, auc in stored]
    assert {r[0] for r in table.rows} == {"dino"}


def test_every_run_shown_has_its_provenance(full_store, full_report):
    page = visible_text(full_report.html)
    provenance = _table(full_report.report, "Runs whose numbers")
    listed = {row[0] for row in provenance.rows}
    assert set(RUN_ID.findall(page)) == listed
    commands = {row[1] for row in provenance.rows}
    assert commands == {"probe", "stats-compare", "survival", "invariance", "stability",
                        "calibrate", "explain"}
    for row in provenance.rows:
        assert row[3] != "–" and row[4] == "0", row  # version and seed of every run
    hashes = _table(full_report.report, "Backbones: checkpoint")
    assert len({row[0] for row in hashes.rows}) == len(hashes.rows)  # one checkpoint each
    by_backbone = {row[0]: row for row in hashes.rows}
    assert all(row[3] == "yes" for row in hashes.rows if row[4] != "no run shown")
    assert by_backbone["dino"][1] == f"{1:064x}" and by_backbone["dino"][2] == "ab" * 32
    assert by_backbone["dino_dro"][1] == f"{5:064x}"


def test_report_holds_no_patient_identifier_path_or_clinical_row(full_store, full_report):
    page = visible_text(full_report.html)
    con = connect(full_store)
    ids = [r[0] for r in con.execute("SELECT patient_id FROM patients").fetchall()]
    assert ids and not [pid for pid in ids if re.search(rf"\b{re.escape(pid)}\b", page)]
    assert SCAN_FOLDER not in page and ".nii" not in page
    assert str(full_store.root) not in page and "/tmp" not in page
    days = con.execute("SELECT os_days FROM clinical").fetchall()
    assert not [d for (d,) in days if f"{d:.2f}" in page or f"{d:.3f}" in page]
    cohort = _table(full_report.report, "Patients per site")
    assert len(cohort.rows) == 3 + 1  # one row per site and all sites: aggregates only


def test_page_is_self_contained(full_report):
    page = full_report.html
    lowered = page.lower()
    for forbidden in ("<script", "<link", "<iframe", "<object", "<embed", "@import", "url(",
                      "http://", "https://", "//fonts", "srcset"):
        assert forbidden not in lowered, forbidden
    sources = re.findall(r'\b(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") or s.startswith("#")
                           for s in sources)
    assert f'content="{html.escape(CONTENT_SECURITY_POLICY)}"' in page


# ------------------------------------------------------------------------- partial stores
@pytest.fixture(scope="module")
def probe_only(tmp_path_factory):
    store = make_probe_store(tmp_path_factory.mktemp("report-probe") / "store", n=45, dim=6)
    first = probe_run(store, "dino", "idh1", fractions=(), **FAST)
    second = probe_run(store, "dino", "idh1", fractions=(), seed=1, **FAST)
    return store, first.info.run_id, second.info.run_id


def test_store_with_only_probe_runs(probe_only, tmp_path):
    store, _, _ = probe_only
    run = report_run(store, tmp_path / "report.html")
    assert run.sections == ("cohort", "performance", "roc", "provenance")
    assert set(run.absent) == {"forest", "data_fraction", "survival", "invariance", "stability",
                               "explain", "calibration"}
    page = run.html
    assert "Not in this store" in page
    for item in run.report.absent:
        assert html.escape(item.command) in page
    assert "neurofeat survival --backbone B --task os" in page
    assert "neurofeat stats compare base dro" in page


def test_newest_run_of_the_same_question_is_shown(probe_only):
    store, first, second = probe_only
    report = build_report(store)
    table = _table(report, "idh1: linear probe, cv")
    assert [r[-1] for r in table.rows] == [second]
    page = render_html(report)
    assert second in page and first not in page


def test_store_without_analyses_or_patients(tmp_path):
    store = Store.open(tmp_path / "empty", create=True)
    run = report_run(store, tmp_path / "empty.html")
    assert run.sections == ("provenance",)
    assert run.absent[0] == "cohort" and len(run.absent) == len(SECTION_TITLES) - 2  # - provenance, findings
    write_tables(store, {"patients": pa.table({"patient_id": ["A1", "A2"],
                                               "site": ["<i>X&Y</i>", "Z"]})})
    run = report_run(store, tmp_path / "patients.html")
    assert run.sections == ("cohort", "provenance")
    assert "&lt;i&gt;X&amp;Y&lt;/i&gt;" in run.html and "<i>X" not in run.html
    assert "A1" not in visible_text(run.html)


# ------------------------------------------------------------------------- renderer
def test_renderer_escapes_every_text():
    png = _images(render_html(Report("t", "s", "now", "0", (Section(
        "k", "K", (Image("c", _tiny_png()),)),))))[0]
    report = Report(title="<script>alert(1)</script> & co", store_name='"s"',
                    generated_at="now", neurofeat_version="0.1",
                    sections=(Section("a<b", "T<t>", (
                        Paragraph("<b>bold</b>"),
                        Table("<cap>", ("<c>",), (("<td>",),), notes=("<n>",)),
                        Image('<img src="http://x">', png, alt='"alt"'))),))
    page = render_html(report)
    assert "<script" not in page and '<img src="http' not in page
    assert re.findall(r'src="([^"]*)"', page) == [f"data:image/png;base64,{base64.b64encode(png).decode()}"]
    for text in ("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co", "&lt;b&gt;bold&lt;/b&gt;",
                 "&lt;cap&gt;", "&lt;td&gt;", "&lt;n&gt;", "&quot;alt&quot;", "T&lt;t&gt;"):
        assert text in page, text


def test_table_rows_must_match_columns():
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        Table("t", ("a", "b"), (("x",),))


def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------- CLI, atomic write
def test_cli_writes_the_report_and_names_what_is_missing(probe_only, tmp_path):
    store, _, _ = probe_only
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", "--store", str(store.root), "--out", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.read_text().startswith("<!DOCTYPE html>")
    assert "not in the store: Survival" in result.output
    assert "neurofeat calibrate --backbone B --task T" in result.output


def test_cli_refuses_an_output_inside_the_store(probe_only):
    store, _, _ = probe_only
    target = store.root / "report.html"
    result = CliRunner().invoke(app, ["report", "--store", str(store.root), "--out", str(target)])
    assert result.exit_code == 1
    assert "is inside the store" in result.output and not target.exists()


def test_a_failed_write_keeps_the_previous_report(probe_only, tmp_path, monkeypatch):
    store, _, _ = probe_only
    out = tmp_path / "report.html"
    out.write_text("previous")
    import neurofeat.runs.report as module

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(module.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        report_run(store, out)
    assert out.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_the_demo_summary_leads_the_report_and_is_queryable(tmp_path):
    from neurofeat.runs.demo import demo_settings
    from neurofeat.runs.demo_summary import DemoSummary, write_summary
    from neurofeat.runs.report import build_report

    store = Store.open(tmp_path / "store", create=True)
    summary = DemoSummary(synthetic=True, n_patients=0, sites=())
    info = write_summary(store, summary, demo_settings(tmp_path, jobs=1))
    stored = connect(store).execute(
        "SELECT position, topic, sentence, seed FROM run_summary ORDER BY position").fetchall()
    assert [row[2] for row in stored] == summary.sentences() and stored[0][:2] == (1, "cohort")
    assert {row[3] for row in stored} == {0}
    report = build_report(store)
    first = report.sections[0]
    assert first.key == "findings"
    texts = [block.text for block in first.blocks]
    assert texts[:-1] == summary.sentences() and info.run_id in texts[-1]
    assert "findings" not in {a.key for a in report.absent}
    # a store without a demo run has no such section, and does not list it as missing
    other = build_report(Store.open(tmp_path / "other", create=True))
    assert "findings" not in other.section_keys and "findings" not in {a.key for a in other.absent}
