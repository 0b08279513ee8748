"""The ``report`` run: everything the store holds as one self-contained HTML page.

Reads the store through its DuckDB catalog (``patients``/``clinical``, ``embeddings``,
``results``, ``comparisons``, ``runs`` and the ``run_<table>`` views), builds a
:class:`~neurofeat.runs.report_html.Report` (frozen dataclasses: tables of formatted
cells and PNG figures drawn by :mod:`neurofeat.analysis.plots_report` and
:mod:`neurofeat.analysis.plots_trust`), renders it with
:func:`~neurofeat.runs.report_html.render_html` and writes the file atomically.

Only aggregates leave the store: counts and prevalences per site, metrics, intervals,
tests, curves. No patient identifier, scan path or clinical row is written into the
page (the Grad-CAM montages of ``explain`` are embedded as that command stored them).
When several runs answer the same question (same command, backbone, task, protocol...)
the newest one is shown; every table names the run its numbers come from, and the
provenance section gives each run's seed, version and checkpoint/preprocessing hashes.
A store holding only some analyses gives a report without the other sections and a line
per missing section naming the command that adds it.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import neurofeat
from neurofeat.analysis.pairing import FAMILIES
from neurofeat.runs.report_html import (Absent, Image, Paragraph, Report, Section, Table,
                                        render_html)
from neurofeat.store import Store, connect
from neurofeat.store.schema import BOOLEAN_MARKERS
from neurofeat.tasks import get_task

__all__ = ["ReportRun", "build_report", "report_run", "SECTION_TITLES"]

#: Section keys in page order, with their titles.
SECTION_TITLES: dict[str, str] = {
    "findings": "What was planted, what was found (neurofeat demo)",
    "cohort": "Cohort",
    "performance": "Performance per task (probes) and paired tests",
    "forest": "Forest plots of paired differences",
    "roc": "ROC curves",
    "data_fraction": "Data-fraction curves",
    "survival": "Survival: c-index per site and Kaplan-Meier curves",
    "invariance": "Site invariance",
    "stability": "Stability under perturbations",
    "explain": "Grad-CAM and occlusion montages",
    "calibration": "Calibration and decision curves",
    "provenance": "Provenance",
}

_ADDED_BY = {
    "cohort": ("the store has no patients", "neurofeat ingest --discover DIR --clinical "
               "clinical.csv --store S"),
    "performance": ("no probe run", "neurofeat probe --backbone B --task T --store S"),
    "forest": ("no stats compare run", "neurofeat stats compare base dro --task all --store S"),
    "roc": ("no probe run with out-of-fold predictions",
            "neurofeat probe --backbone B --task T --store S"),
    "data_fraction": ("no probe run with a data-fraction curve",
                      "neurofeat probe --backbone B --task T --fractions 0.1,0.25,0.5,1.0 "
                      "--store S"),
    "survival": ("no survival run", "neurofeat survival --backbone B --task os --store S"),
    "invariance": ("no invariance run", "neurofeat invariance --family all --label idh1 "
                   "--store S"),
    "stability": ("no stability run", "neurofeat extract --backbone B --perturb gibbs:0.2 "
                  "--store S, then neurofeat stability --backbone B --task T --store S"),
    "explain": ("no explain run", "neurofeat explain --backbone B --task T --patient P "
                "--store S"),
    "calibration": ("no calibrate run", "neurofeat calibrate --backbone B --task T --store S"),
}

_DPI = 100


# ------------------------------------------------------------------------------ helpers
def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}".replace("-", "−")
    if pd.isna(value):
        return "–"
    return str(value)


def _ci(estimate: object, low: object, high: object) -> str:
    text = _fmt(estimate)
    if text == "–":
        return text
    if _fmt(low) == "–" or _fmt(high) == "–":
        return text
    return f"{text} [{_fmt(low)}, {_fmt(high)}]"


def _count(value: object) -> str:
    """A count (stored as int, or float when a column also holds NULL)."""
    if value is None or pd.isna(value):
        return "–"
    return str(int(value))


def _n_pos(row) -> str:
    return f"{_count(row.n)} ({_count(row.n_pos)})"


def _p(value: object) -> str:
    if value is None or pd.isna(value):
        return "–"
    value = float(value)
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _newest(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows of the newest run (by created_at, then run_id) within each ``keys`` group."""
    if frame.empty:
        return frame
    ordered = frame.sort_values(["created_at", "run_id"])
    groups = [ordered[k].astype(str) for k in keys]  # NULL keys form their own group
    last = ordered.groupby(groups, sort=False)["run_id"].transform("last")
    return ordered[ordered["run_id"] == last].sort_index().reset_index(drop=True)


def _pairs(backbones: Iterable[str]) -> list[tuple[str, str | None, str | None]]:
    """(label, base, dro) rows: base families first, each beside its ``_dro`` twin."""
    present = list(dict.fromkeys(backbones))
    order = [b for b in FAMILIES["base"] if b in present or f"{b}_dro" in present]
    order += [b for b in present if not b.endswith("_dro") and b not in order]
    order += [b[:-4] for b in present if b.endswith("_dro") and b[:-4] not in order]
    rows = []
    for label in order:
        base = label if label in present else None
        dro = f"{label}_dro" if f"{label}_dro" in present else None
        rows.append((label, base, dro))
    return rows


class _Provenance:
    """Runs whose numbers the report shows: seeds, backbones, tasks and hashes."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, set]] = {}
        self.hashes: dict[tuple[str, str | None, str | None], set[str]] = {}

    def add(self, frame: pd.DataFrame) -> None:
        if frame.empty or "run_id" not in frame:
            return
        columns = {"seed": ("seed",), "task": ("task",),
                   "backbone": ("backbone", "backbone_a", "backbone_b")}
        for run_id, rows in frame.groupby("run_id", sort=False):
            entry = self.runs.setdefault(run_id, {key: set() for key in columns})
            for key, names in columns.items():
                for name in (n for n in names if n in rows):
                    entry[key].update(str(int(v)) if key == "seed" else str(v)
                                      for v in rows[name].dropna().unique())
        sides = ([("backbone", "checkpoint_sha256", "preprocess_sha256")]
                 + [(f"backbone_{s}", f"checkpoint_sha256_{s}", f"preprocess_sha256_{s}")
                    for s in ("a", "b")])
        for backbone, checkpoint, preprocess in sides:
            if backbone not in frame or checkpoint not in frame:
                continue
            for row in frame[[backbone, checkpoint, preprocess, "run_id"]].drop_duplicates(
                    ).itertuples(index=False):
                names, checks, preps = (str(row[0]).split(","), str(row[1]).split(","),
                                        str(row[2]).split(","))
                if len(names) != len(checks):  # a pooled family row: its members' rows
                    continue                   # carry each member's hashes
                for name, check, prep in zip(names, checks, preps):
                    key = (name, None if check in ("None", "nan") else check,
                           None if prep in ("None", "nan") else prep)
                    self.hashes.setdefault(key, set()).add(row[3])


# ------------------------------------------------------------------------------ reading
class _Catalog:
    """The store's DuckDB catalog: its views, which of them exist, and the runs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.con = connect(store)
        self.views = {row[0] for row in self.con.sql(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        present = set(self.frame("DESCRIBE runs")["column_name"])
        extra = ", ".join(f"to_json({c}) AS {c}" if c in present else f"NULL AS {c}"
                          for c in ("params", "figures"))
        runs = self.frame(f"SELECT run_id, command, created_at, neurofeat_version, {extra} "
                          "FROM runs")
        self.runs = runs.set_index("run_id") if not runs.empty else runs

    def frame(self, sql: str, params: Sequence | None = None) -> pd.DataFrame:
        frame = self.con.execute(sql, list(params or [])).df()
        return frame.drop(columns=["filename"], errors="ignore")

    def run_table(self, table: str, command: str) -> pd.DataFrame:
        """Rows of ``run_<table>`` written by ``command``."""
        if f"run_{table}" not in self.views:
            return pd.DataFrame()
        return self.frame(f"SELECT * FROM run_{table} WHERE run_id IN "
                          "(SELECT run_id FROM runs WHERE command = ?)", [command])

    def params(self, run_id: str) -> dict:
        if self.runs.empty or run_id not in self.runs.index:
            return {}
        return json.loads(self.runs.loc[run_id, "params"] or "{}") or {}

    def figures(self, run_id: str) -> list[str]:
        if self.runs.empty or run_id not in self.runs.index:
            return []
        return list(json.loads(self.runs.loc[run_id, "figures"] or "[]") or [])


# ------------------------------------------------------------------------------ sections
def _cohort(cat: _Catalog) -> Section | None:
    counts = cat.frame("SELECT count(*) AS n FROM patients")
    if counts.empty or int(counts["n"].iloc[0]) == 0:
        return None
    markers = ", ".join(f"count({m}) AS {m}_known, sum(CAST({m} AS INTEGER)) AS {m}_pos"
                        for m in BOOLEAN_MARKERS)
    frame = cat.frame(
        f"SELECT coalesce(site, 'all sites') AS site, grouping(site) AS pooled, "
        f"count(*) AS patients, {markers}, count(os_days) AS os_known, "
        f"sum(CAST(os_event AS INTEGER)) AS os_events, median(os_days) AS os_median "
        f"FROM clinical GROUP BY ROLLUP (site) ORDER BY pooled, site")
    shown = [m for m in BOOLEAN_MARKERS if frame[f"{m}_known"].sum() > 0]
    columns = ("site", "patients", *shown, "with OS", "deaths (events)", "median OS (days)")
    rows = []
    for row in frame.itertuples():
        cells = [str(row.site), str(int(row.patients))]
        for marker in shown:
            known, pos = int(getattr(row, f"{marker}_known")), getattr(row, f"{marker}_pos")
            cells.append("–" if known == 0 else
                         f"{int(pos)}/{known} ({100 * int(pos) / known:.0f} %)")
        cells += [str(int(row.os_known)), _fmt(int(row.os_events) if row.os_known else None),
                  _fmt(row.os_median, 0)]
        rows.append(tuple(cells))
    blocks: list = [Table("Patients per site: label prevalence (positive/known) and "
                          "overall-survival events", columns, tuple(rows),
                          notes=("Counts only; unknown labels are left out of the "
                                 "denominators.",))]
    embedded = cat.frame("SELECT backbone, perturbation, count(DISTINCT patient_id) AS n "
                         "FROM embeddings GROUP BY ALL ORDER BY ALL")
    if not embedded.empty:
        rows = []
        for backbone, group in embedded.groupby("backbone", sort=True):
            clean = group[group["perturbation"] == "none"]["n"]
            others = [f"{p} ({n})" for p, n in zip(group["perturbation"], group["n"])
                      if p != "none"]
            rows.append((backbone, _fmt(int(clean.iloc[0]) if len(clean) else None),
                         ", ".join(others) or "–"))
        blocks.append(Table("Embeddings in the store (patients per backbone)",
                            ("backbone", "patients (clean)", "perturbations (patients)"),
                            tuple(rows)))
    return Section("cohort", SECTION_TITLES["cohort"], tuple(blocks))


def _main_probe(rows: pd.DataFrame) -> str:
    return "ridge" if (rows["probe"] == "ridge").any() else "linear"


def _probe_rows(cat: _Catalog) -> pd.DataFrame:
    frame = cat.frame("SELECT * FROM results WHERE command = 'probe' AND \"primary\" "
                      "AND perturbation = 'none'")
    return _newest(frame, ["backbone", "task", "protocol", "probe", "cohort_sites"])


def _comparison_rows(cat: _Catalog) -> pd.DataFrame:
    frame = cat.frame("SELECT * FROM comparisons WHERE \"primary\" AND perturbation = 'none'")
    return _newest(frame, ["task", "protocol", "backbone_a", "backbone_b", "cohort_sites",
                           "comparison"])


def _backbone_table(rows: pd.DataFrame, task: str, protocol: str, sites: str) -> Table:
    main = _main_probe(rows)
    rows = rows[(rows["probe"] == main) & (rows["site"] == "all") & (rows["fraction"] == 1.0)]
    value = {(r.backbone, r.metric): r for r in rows.itertuples()}
    table_rows = []
    for label, base, dro in _pairs(rows["backbone"]):
        cells = [label]
        for backbone in (base, dro):
            for metric in ("auc", "ba"):
                r = value.get((backbone, metric))
                cells.append("–" if r is None else _ci(r.estimate, r.ci_low, r.ci_high))
        any_row = next((value[(b, m)] for b in (base, dro) for m in ("auc", "ba")
                        if (b, m) in value), None)
        cells.append("–" if any_row is None else _n_pos(any_row))
        runs = sorted({value[(b, m)].run_id for b in (base, dro) for m in ("auc", "ba")
                       if (b, m) in value})
        cells.append(", ".join(runs))
        table_rows.append(tuple(cells))
    notes = sorted({e for e in rows["estimand"].dropna() if e})[:2]
    notes += sorted({w for w in rows["warning"].dropna() if w})
    where = "" if sites == "all" else f", sites {sites}"
    methods = ", ".join(sorted({m for m in rows.get("ci_method", pd.Series(dtype=str)).dropna()}))
    return Table(f"{task}: {main} probe, {protocol}{where}; estimate and 95 % interval "
                 f"(primary: {methods or 'calibrated-t'})",
                 ("backbone", "base AUC", "base BA", "DRO AUC", "DRO BA", "n (positives)",
                  "run"), tuple(table_rows), notes=tuple(f"estimand: {n}" if i < 2 else n
                                                         for i, n in enumerate(notes)))


def _site_table(rows: pd.DataFrame, task: str, protocol: str) -> Table | None:
    """Per-site rows of a leave-one-site-out (held-out site) or within-site protocol."""
    main = _main_probe(rows)
    rows = rows[(rows["probe"] == main) & (rows["site"] != "all") & (rows["fraction"] == 1.0)]
    if rows.empty:
        return None
    value = {(r.backbone, r.site, r.metric): r for r in rows.itertuples()}
    order = [b for _, base, dro in _pairs(rows["backbone"]) for b in (base, dro) if b]
    table_rows = []
    for backbone in order:
        for site in sorted(set(rows.loc[rows["backbone"] == backbone, "site"])):
            auc, ba = value.get((backbone, site, "auc")), value.get((backbone, site, "ba"))
            first = auc or ba
            table_rows.append((backbone, site,
                               "–" if auc is None else _ci(auc.estimate, auc.ci_low, auc.ci_high),
                               "–" if ba is None else _ci(ba.estimate, ba.ci_low, ba.ci_high),
                               _n_pos(first), first.run_id))
    what = "held-out site" if protocol == "loso" else "within each site"
    notes = sorted({e for e in rows["estimand"].dropna() if e})[:2]
    return Table(f"{task}: {main} probe, {protocol}, per site ({what}); estimate and 95 % "
                 "interval (primary)", ("backbone", "site", "AUC", "BA", "n (positives)", "run"),
                 tuple(table_rows), notes=tuple(f"estimand: {n}" for n in notes))


def _test_table(tests: pd.DataFrame, task: str, protocol: str) -> Table:
    rows = []
    for r in tests.itertuples():
        seed = " (seed reference)" if getattr(r, "comparison", None) == "seed-reference" else ""
        rows.append((f"{r.backbone_a} − {r.backbone_b}{seed}", r.metric, r.site,
                     _ci(r.estimate_a, r.ci_low_a, r.ci_high_a),
                     _ci(r.estimate_b, r.ci_low_b, r.ci_high_b),
                     _ci(r.diff, r.diff_ci_low, r.diff_ci_high), _p(r.p_value), _p(r.p_holm),
                     str(r.test), _n_pos(r), r.run_id))
    notes = [f"method: {m}" for m in sorted({m for m in tests["method"].dropna() if m})]
    notes += [f"estimand: {e}" for e in sorted({e for e in tests["estimand"].dropna() if e})[:2]]
    notes += ["Δ = A − B; p Holm adjusts across the tasks of the same stats compare run."]
    return Table(f"{task}: primary paired test ({protocol})",
                 ("A − B", "metric", "site", "A", "B", "Δ [95 % CI]", "p", "p Holm", "test",
                  "n (positives)", "run"), tuple(rows), notes=tuple(notes))


def _sides_from_tests(tests: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """Rows in the shape of the probe rows for backbones that only a comparison scored:
    its per-side estimates are the same primary estimates a probe run stores."""
    if tests.empty:
        return probes.iloc[:0]
    scored = set(probes["backbone"]) if not probes.empty else set()
    rows = tests[(tests["site"] == "all") & ~tests["pooled"].fillna(False).astype(bool)
                 & tests["metric"].isin(["auc", "ba"])
                 & (tests.get("comparison", "requested") != "seed-reference")]
    main = "ridge" if not probes.empty and (probes["probe"] == "ridge").any() else "linear"
    found = []
    for side in ("a", "b"):
        part = rows[~rows[f"backbone_{side}"].isin(scored)]
        found.append(pd.DataFrame({
            "backbone": part[f"backbone_{side}"], "metric": part["metric"],
            "estimate": part[f"estimate_{side}"], "ci_low": part[f"ci_low_{side}"],
            "ci_high": part[f"ci_high_{side}"], "n": part["n"], "n_pos": part["n_pos"],
            "estimand": part["estimand"], "warning": part["warning"],
            "run_id": part["run_id"], "seed": part["seed"], "task": part["task"],
            "checkpoint_sha256": part[f"checkpoint_sha256_{side}"],
            "preprocess_sha256": part[f"preprocess_sha256_{side}"],
            "probe": main, "site": "all", "fraction": 1.0}))
    frame = pd.concat(found, ignore_index=True)
    return frame.drop_duplicates(["backbone", "metric"])


def _performance(cat: _Catalog, probes: pd.DataFrame, tests: pd.DataFrame,
                 prov: _Provenance) -> Section | None:
    if probes.empty and tests.empty:
        return None
    blocks: list = [Paragraph(
        "Each cell: the primary estimate with its calibrated 95 % interval (the expected "
        "performance of the probe trained on the training-fold size; see the estimand "
        "under each table). DRO columns hold each base backbone's _dro twin.", "note")]
    keys = set()
    if not probes.empty:
        keys |= set(probes[["task", "protocol", "cohort_sites"]].itertuples(index=False, name=None))
    if not tests.empty:
        keys |= set(tests[["task", "protocol", "cohort_sites"]].itertuples(index=False, name=None))
    for task, protocol, sites in sorted(keys, key=lambda k: (str(k[0]), str(k[1]), str(k[2]))):
        sub = probes[(probes["task"] == task) & (probes["protocol"] == protocol)
                     & (probes["cohort_sites"] == sites)] if not probes.empty else probes
        pairs = tests[(tests["task"] == task) & (tests["protocol"] == protocol)
                      & (tests["cohort_sites"] == sites)] if not tests.empty else tests
        sub = pd.concat([sub, _sides_from_tests(pairs, sub)], ignore_index=True)
        if not sub.empty:
            blocks.append(_backbone_table(sub, task, protocol, sites))
            per_site = _site_table(sub, task, protocol) if protocol != "cv" else None
            if per_site is not None:
                blocks.append(per_site)
            prov.add(sub)
        if not pairs.empty:
            blocks.append(_test_table(pairs, task, protocol))
            prov.add(pairs)
    return Section("performance", SECTION_TITLES["performance"], tuple(blocks))


def _forest(tests: pd.DataFrame) -> Section | None:
    if tests.empty:
        return None
    from neurofeat.analysis.plots_report import forest_plot

    blocks = []
    for protocol, rows in tests.groupby("protocol", sort=True):
        rows = rows[rows["site"] == "all"] if (rows["site"] == "all").any() else rows
        rows = rows.sort_values(["task", "metric", "pooled", "backbone_a"])
        fig = forest_plot(rows, title=f"primary paired tests ({protocol})")
        blocks.append(Image(f"Paired differences A − B with their calibrated 95 % intervals, "
                            f"{protocol}; diamonds: pooled family rows. Runs: "
                            f"{', '.join(sorted(set(rows['run_id'])))}.", _png(fig),
                            alt=f"forest plot, {protocol}"))
    return Section("forest", SECTION_TITLES["forest"], tuple(blocks))


def _binary_labels(task: str, labels: pd.Series) -> pd.Series | None:
    try:
        task_def = get_task(task)
    except ValueError:
        return None
    if task_def.kind == "continuous":
        return labels >= float(task_def.threshold)
    return labels.astype(float) > 0.5


def _roc(cat: _Catalog, probes: pd.DataFrame, prov: _Provenance) -> Section | None:
    predictions = cat.run_table("predictions", "probe")
    if probes.empty or predictions.empty:
        return None
    from neurofeat.analysis.plots_report import average_repeats, roc_figure

    blocks = []
    chosen = probes[(probes["site"] == "all") & (probes["fraction"] == 1.0)]
    for (task, protocol), rows in chosen.groupby(["task", "protocol"], sort=True):
        main = _main_probe(rows)
        run_ids = set(rows[rows["probe"] == main]["run_id"])
        sub = predictions[predictions["run_id"].isin(run_ids) & (predictions["probe"] == main)
                          & (predictions["fraction"] == 1.0)]
        if sub.empty:
            continue
        scores = average_repeats(sub, keys=["backbone"])
        labels = _binary_labels(task, scores["label"])
        if labels is None or labels.all() or not labels.any():
            continue
        order = [b for _, base, dro in _pairs(scores["backbone"]) for b in (base, dro) if b]
        scores = scores.assign(label=labels.to_numpy(),
                               backbone=pd.Categorical(scores["backbone"], order, ordered=True)
                               ).sort_values("backbone")
        scores["backbone"] = scores["backbone"].astype(str)
        fig = roc_figure(scores, curve="backbone",
                         title=f"{task} ({protocol}): {main} probe")
        blocks.append(Image(f"{task}, {protocol}: ROC curves of the repeat-averaged "
                            f"out-of-fold scores, all sites and per site (AUC in the legend "
                            f"is that of these scores). Runs: {', '.join(sorted(run_ids))}.",
                            _png(fig), alt=f"ROC curves {task} {protocol}"))
        prov.add(rows[rows["probe"] == main])
    return Section("roc", SECTION_TITLES["roc"], tuple(blocks)) if blocks else None


def _data_fraction(probes: pd.DataFrame, prov: _Provenance) -> Section | None:
    if probes.empty:
        return None
    from neurofeat.analysis.plots_report import data_fraction_figure

    blocks = []
    rows = probes[(probes["site"] == "all") & probes["metric"].isin(["auc", "ba"])]
    for (task, protocol), sub in rows.groupby(["task", "protocol"], sort=True):
        sub = sub[sub["probe"] == _main_probe(sub)]
        if sub["fraction"].nunique() < 2:
            continue
        fig = data_fraction_figure(sub, curve="backbone", title=f"{task} ({protocol})")
        blocks.append(Image(f"{task}, {protocol}: metric against the share of each training "
                            "fold used, calibrated 95 % band. Runs: "
                            f"{', '.join(sorted(set(sub['run_id'])))}.", _png(fig),
                            alt=f"data-fraction curve {task}"))
        prov.add(sub)
    if not blocks:
        return None
    return Section("data_fraction", SECTION_TITLES["data_fraction"], tuple(blocks))


def _findings(cat: _Catalog) -> Section | None:
    """The newest ``neurofeat demo`` summary, sentence by sentence."""
    table = cat.run_table("summary", "demo")
    if table.empty:
        return None
    newest = table[table["created_at"] == table["created_at"].max()].sort_values("position")
    run_id = str(newest["run_id"].iloc[0])
    blocks: list = [Paragraph(str(sentence)) for sentence in newest["sentence"]]
    blocks.append(Paragraph(f"Summary written by neurofeat demo (run {run_id}) from the runs below; every "
                            "number in it is one of theirs or of the synthetic cohort's card.", "note"))
    return Section("findings", SECTION_TITLES["findings"], tuple(blocks))


def _permutation(row) -> bool:
    """A stored log-rank row holds the permutation p (not the chi-squared one)."""
    from neurofeat.analysis.survival.permutation import is_permutation_method

    return is_permutation_method(row.ci_method)


def _survival(cat: _Catalog, prov: _Provenance) -> Section | None:
    frame = cat.frame("SELECT * FROM results WHERE command = 'survival' AND \"primary\" "
                      "AND perturbation = 'none' AND metric IN ('harrell_c', 'uno_c', "
                      "'logrank_p')")
    frame = _newest(frame, ["backbone", "task", "model", "protocol", "cohort_sites"])
    if frame.empty:
        return None
    from neurofeat.analysis.plots_report import km_panels

    blocks: list = []
    for (task, protocol), rows in frame.groupby(["task", "protocol"], sort=True):
        value = {(r.backbone, r.model, r.site, r.metric): r for r in rows.itertuples()}
        table_rows = []
        keys = rows[["backbone", "model", "site"]].drop_duplicates()
        keys = keys.assign(order=keys["site"] != "all").sort_values(["backbone", "model",
                                                                      "order", "site"])
        for backbone, model, site in keys[["backbone", "model", "site"]].itertuples(
                index=False, name=None):
            h = value.get((backbone, model, site, "harrell_c"))
            u = value.get((backbone, model, site, "uno_c"))
            lr = value.get((backbone, model, site, "logrank_p"))
            first = h or u or lr
            table_rows.append((backbone, model, site, _count(first.n),
                               _count(first.n_pos), "–" if h is None else
                               _ci(h.estimate, h.ci_low, h.ci_high),
                               "–" if u is None else _ci(u.estimate, u.ci_low, u.ci_high),
                               "–" if lr is None else _p(lr.estimate) + ("" if _permutation(lr) else " †"),
                               first.run_id))
        notes = [f"estimand: {e}" for e in sorted({e for e in rows["estimand"].dropna()
                                                   if e})[:2]]
        notes.append("log-rank p: permutation test of high vs low risk (median split of the "
                     "out-of-fold risk at the training-fold median, first repeat; outcomes permuted "
                     "within site and every fold refitted, so the p is exact; by default the "
                     "permutations stop once the p is clearly large, Besag-Clifford).")
        logrank = rows[rows["metric"] == "logrank_p"]
        if any(not _permutation(r) for r in logrank.itertuples()):
            notes.append("† asymptotic chi-squared p (published procedure, not calibrated: 12.6 % "
                         "type-I error in simulation); rerun neurofeat survival with --permutations B.")
        blocks.append(Table(f"{task} ({protocol}): c-index with calibrated 95 % interval",
                            ("backbone", "model", "site", "n", "events", "Harrell's C",
                             "Uno's C", "log-rank p", "run"), tuple(table_rows),
                            notes=tuple(notes)))
        prov.add(rows)
    km = cat.run_table("km", "survival")
    if not km.empty:
        for run_id, rows in km[km["run_id"].isin(set(frame["run_id"]))].groupby("run_id",
                                                                                 sort=True):
            first = rows.iloc[0]
            fig = km_panels(rows, title=f"{first['backbone']} on {first['task']} "
                                        f"({first['model']})")
            blocks.append(Image(f"Kaplan-Meier curves of the median-split risk groups, all "
                                f"sites and per site (run {run_id}).", _png(fig),
                                alt=f"Kaplan-Meier {first['backbone']}"))
    return Section("survival", SECTION_TITLES["survival"], tuple(blocks))


def _invariance(cat: _Catalog, prov: _Provenance) -> Section | None:
    table = cat.run_table("invariance", "invariance")
    if table.empty:
        return None
    from neurofeat.analysis.plots_trust import invariance_scatter, invariance_summary

    blocks: list = [Paragraph("Lower site separability reads as better: an encoder whose "
                              "embeddings tell the sites apart offers its probes a shortcut.",
                              "note")]
    newest = _newest(table, ["by", "perturbation"])
    coordinates = cat.run_table("coordinates", "invariance")
    for (by, perturbation), rows in newest.groupby(["by", "perturbation"], sort=True):
        run_id = rows["run_id"].iloc[0]
        value = {(r.backbone, r.metric): r for r in rows[rows["ci_method"] != "percentile"]
                 .itertuples()}
        table_rows = []
        for backbone in dict.fromkeys(rows["backbone"]):
            s, d, p = (value.get((backbone, m)) for m in
                       ("silhouette", "davies_bouldin", "site_probe_ba"))
            table_rows.append((backbone, rows[rows["backbone"] == backbone]["family"].iloc[0],
                               _fmt(None if s is None else s.estimate),
                               _fmt(None if d is None else d.estimate),
                               "–" if p is None else _ci(p.estimate, p.ci_low, p.ci_high),
                               _fmt(None if p is None else p.chance),
                               _count(None if p is None else p.n),
                               _count(None if p is None else p.n_groups)))
        where = "" if perturbation == "none" else f", perturbation {perturbation}"
        blocks.append(Table(f"Separability by {by}{where} (run {run_id})",
                            ("backbone", "family", "PCA-silhouette (lower better)",
                             "Davies-Bouldin (higher better)", f"{by}-probe BA [95 % CI]",
                             "chance", "n", "groups"), tuple(table_rows)))
        blocks.append(Image(f"Silhouette, Davies-Bouldin and {by}-probe accuracy per backbone "
                            f"(run {run_id}).", _png(invariance_summary(rows)),
                            alt="invariance summary"))
        coords = coordinates[coordinates["run_id"] == run_id] if not coordinates.empty \
            else coordinates
        if not coords.empty:
            label = cat.params(run_id).get("label")
            fig = invariance_scatter(coords, by=by, label=label)
            methods = " and ".join({"pca": "PCA", "tsne": "t-SNE"}.get(m, m)
                                   for m in dict.fromkeys(coords["method"]))
            blocks.append(Image(f"{methods} of the embeddings coloured by {by}"
                                + (f" and by {label}" if label else "") + f" (run {run_id}).",
                                _png(fig), alt="PCA and t-SNE scatter"))
        prov.add(rows)
    return Section("invariance", SECTION_TITLES["invariance"], tuple(blocks))


def _stability(cat: _Catalog, prov: _Provenance) -> Section | None:
    table = cat.run_table("stability", "stability")
    if table.empty:
        return None
    from neurofeat.analysis.plots_trust import stability_curves

    blocks: list = []
    drift = cat.run_table("drift", "stability")
    for task, rows in _newest(table, ["task"]).groupby("task", sort=True):
        run_id = rows["run_id"].iloc[0]
        shown = rows[rows["perturbation"] != "none"]
        table_rows = tuple(
            (r.backbone, r.perturbation, r.metric, _ci(r.estimate, r.ci_low, r.ci_high),
             _ci(r.delta, r.delta_ci_low, r.delta_ci_high), _count(r.n))
            for r in shown.sort_values(["metric", "backbone", "kind", "strength"]).itertuples())
        blocks.append(Table(f"{task}: probe trained on clean embeddings, scored on perturbed "
                            f"ones (run {run_id})", ("backbone", "perturbation", "metric",
                                                     "estimate [95 % CI]",
                                                     "Δ from clean [95 % CI]", "n"),
                            table_rows))
        for metric in [m for m in ("auc", "ba") if m in set(rows["metric"])]:
            blocks.append(Image(f"{task}: {metric} against perturbation strength (run {run_id}).",
                                _png(stability_curves(rows, metric=metric)),
                                alt=f"stability {metric}"))
        if not drift.empty:
            sub = drift[drift["run_id"] == run_id]
            distance = sub.groupby(["backbone", "perturbation"], sort=True)["cosine_distance"]
            summary = distance.agg(patients="count", median="median",
                                   q25=lambda v: v.quantile(0.25),
                                   q75=lambda v: v.quantile(0.75)).reset_index()
            blocks.append(Table("Embedding drift: cosine distance between clean and "
                                "perturbed embeddings (over patients)",
                                ("backbone", "perturbation", "patients", "median",
                                 "25th-75th percentile"),
                                tuple((r.backbone, r.perturbation, _fmt(int(r.patients)),
                                       _fmt(r.median, 4), f"{_fmt(r.q25, 4)} – {_fmt(r.q75, 4)}")
                                      for r in summary.itertuples())))
        prov.add(rows)
    return Section("stability", SECTION_TITLES["stability"], tuple(blocks))


def _explain(cat: _Catalog, prov: _Provenance) -> Section | None:
    table = cat.run_table("attribution", "explain")
    if table.empty:
        return None
    blocks: list = [Paragraph(
        "Share of the attribution inside the tumour mask against random smooth maps over "
        "the brain; the montages are the figures explain stored with each run, and their titles "
        "name the patient explain was asked to explain (--patient): the one patient identifier "
        "this page can show. Share the page accordingly, or explain a patient whose identifier "
        "may be shown.", "note")]
    rows = tuple((r.run_id, r.backbone, r.task, r.method, _fmt(r.probability),
                  _fmt(r.fraction_inside), _ci(r.baseline_mean, r.baseline_ci_low,
                                               r.baseline_ci_high),
                  _fmt(r.enrichment, 2), _p(r.p_value))
                 for r in table.sort_values(["created_at", "method"]).itertuples())
    blocks.append(Table("Attribution maps", ("run", "backbone", "task", "method",
                                             "probability", "share inside tumour",
                                             "random maps [interval]", "enrichment", "p"),
                        rows))
    for run_id in dict.fromkeys(table.sort_values("created_at")["run_id"]):
        for name in cat.figures(run_id):
            path = cat.store.runs_dir / run_id / f"{name}.png"
            if name.endswith("montage") and path.is_file():
                blocks.append(Image(f"{name.replace('_', ' ')} (run {run_id})",
                                    path.read_bytes(), alt=f"{name} montage"))
    prov.add(table)
    return Section("explain", SECTION_TITLES["explain"], tuple(blocks))


def _calibration(cat: _Catalog, prov: _Provenance) -> Section | None:
    table = cat.run_table("calibration", "calibrate")
    if table.empty:
        return None
    from neurofeat.analysis.plots_trust import decision_curve_figure, reliability_diagram

    newest = _newest(table, ["backbone", "task", "probe"])
    bins = cat.run_table("reliability", "calibrate")
    curves = cat.run_table("decision_curve", "calibrate")
    blocks: list = []
    for run_id, rows in newest.groupby("run_id", sort=True):
        first = rows.iloc[0]
        name = f"{first['backbone']} on {first['task']} ({first['probe']} probe)"
        blocks.append(Table(
            f"Calibration of {name} (run {run_id})",
            ("site", "n", "positives", "slope [95 % CI]", "intercept [95 % CI]",
             "Brier [95 % CI]", "scaled Brier"),
            tuple((r.site, _count(r.n), _count(r.n_pos), _ci(r.slope, r.slope_ci_low,
                                                         r.slope_ci_high),
                   _ci(r.intercept, r.intercept_ci_low, r.intercept_ci_high),
                   _ci(r.brier, r.brier_ci_low, r.brier_ci_high), _fmt(r.brier_scaled))
                  for r in rows.itertuples()),
            notes=("slope 1 and intercept 0 = calibrated; scaled Brier = 1 - Brier / Brier of "
                   "predicting the prevalence.",)))
        sub = bins[bins["run_id"] == run_id] if not bins.empty else bins
        if not sub.empty:
            blocks.append(Image(f"Reliability diagram of {name} (run {run_id}).",
                                _png(reliability_diagram(sub, title=name)),
                                alt="reliability diagram"))
        sub = curves[curves["run_id"] == run_id] if not curves.empty else curves
        if not sub.empty:
            blocks.append(Image(f"Decision curve of {name} (run {run_id}).",
                                _png(decision_curve_figure(sub, title=name)),
                                alt="decision curve"))
        prov.add(rows)
    return Section("calibration", SECTION_TITLES["calibration"], tuple(blocks))


def _provenance(cat: _Catalog, prov: _Provenance) -> Section:
    rows = []
    for run_id in sorted(prov.runs):
        info = cat.runs.loc[run_id] if run_id in getattr(cat.runs, "index", ()) else None
        entry = prov.runs[run_id]
        rows.append((run_id, "–" if info is None else str(info["command"]),
                     "–" if info is None else str(info["created_at"]),
                     "–" if info is None else str(info["neurofeat_version"]),
                     ", ".join(sorted(entry["seed"])) or "–",
                     ", ".join(sorted(entry["backbone"])) or "–",
                     ", ".join(sorted(entry["task"])) or "–"))
    blocks: list = [Table("Runs whose numbers this report shows",
                          ("run", "command", "created", "neurofeat version", "seed",
                           "backbones", "tasks"), tuple(rows))]
    stored = cat.frame("SELECT backbone, checkpoint_sha256, preprocess_sha256, "
                       "string_agg(DISTINCT neurofeat_version, ', ') AS version "
                       "FROM embeddings WHERE perturbation = 'none' GROUP BY ALL ORDER BY ALL")
    current = {(r.backbone, r.checkpoint_sha256, r.preprocess_sha256): r.version
               for r in stored.itertuples()}
    hash_rows = []
    for (backbone, checkpoint, preprocess), run_ids in sorted(
            prov.hashes.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        in_store = (backbone, checkpoint, preprocess) in current
        hash_rows.append((backbone, checkpoint or "–", preprocess or "–",
                          "yes" if in_store else "no (replaced since)",
                          ", ".join(sorted(run_ids))))
    for (backbone, checkpoint, preprocess), version in current.items():
        if not any(k[0] == backbone for k in prov.hashes):
            hash_rows.append((backbone, checkpoint or "–", preprocess or "–",
                              f"yes (extracted with {version})", "no run shown"))
    if hash_rows:
        blocks.append(Table("Backbones: checkpoint and preprocessing hashes (SHA-256)",
                            ("backbone", "checkpoint sha256", "preprocess sha256",
                             "embeddings in store now", "runs"), tuple(hash_rows)))
    blocks.append(Paragraph("Every table above names the run its numbers come from; the "
                            "rows of each run are in the store (results, comparisons and "
                            "run_<table> views of neurofeat sql).", "note"))
    return Section("provenance", SECTION_TITLES["provenance"], tuple(blocks))


# ------------------------------------------------------------------------------ the run
@dataclass(frozen=True, eq=False)
class ReportRun:
    """A written report.

    Attributes
    ----------
    report : Report
        The model the page was rendered from.
    path : Path or None
        Where the HTML was written (None with ``write=False``).
    html : str
        The page.
    """

    report: Report
    path: Path | None
    html: str

    @property
    def sections(self) -> tuple[str, ...]:
        """Keys of the sections present."""
        return self.report.section_keys

    @property
    def absent(self) -> tuple[str, ...]:
        """Keys of the sections the store had no data for."""
        return tuple(a.key for a in self.report.absent)


def build_report(store: Store, *, title: str | None = None) -> Report:
    """Read the store into a :class:`Report` (no file is written).

    Parameters
    ----------
    store : Store
    title : str, optional
        Page title (default: 'neurofeat report: <store folder name>').
    """
    cat = _Catalog(store)
    prov = _Provenance()
    probes = _probe_rows(cat)
    tests = _comparison_rows(cat)
    findings = _findings(cat)
    built = {
        "cohort": _cohort(cat),
        "performance": _performance(cat, probes, tests, prov),
        "forest": _forest(tests),
        "roc": _roc(cat, probes, prov),
        "data_fraction": _data_fraction(probes, prov),
        "survival": _survival(cat, prov),
        "invariance": _invariance(cat, prov),
        "stability": _stability(cat, prov),
        "explain": _explain(cat, prov),
        "calibration": _calibration(cat, prov),
    }
    # the demo's summary leads when there is one; other stores simply have none (not "absent")
    sections = [s for s in (findings, *built.values()) if s is not None]
    sections.append(_provenance(cat, prov))
    absent = [Absent(key, SECTION_TITLES[key], *_ADDED_BY[key])
              for key, section in built.items() if section is None]
    cat.con.close()
    return Report(
        title=title or f"neurofeat report: {store.root.name}",
        store_name=store.root.name,
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        neurofeat_version=neurofeat.__version__,
        sections=tuple(sections), absent=tuple(absent))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def report_run(store: Store, out: str | os.PathLike | None = "report.html", *,
               title: str | None = None, write: bool = True) -> ReportRun:
    """Build the HTML report of everything in the store and write it to ``out``.

    Parameters
    ----------
    store : Store
    out : path
        The HTML file (written atomically: a reader sees the old file or the new one).
    title : str, optional
    write : bool
        Write the file (False: build only).

    Raises
    ------
    ValueError
        When ``out`` lies inside the store (the store holds only what neurofeat's
        commands write there).
    """
    path = None
    if write:
        path = Path(out if out is not None else "report.html").expanduser().resolve()
        root = store.root.resolve()
        if path == root or root in path.parents:
            raise ValueError(f"--out {path} is inside the store {root}; write the report "
                             "elsewhere, e.g. --out report.html")
    report = build_report(store, title=title)
    page = render_html(report)
    if path is not None:
        _write_atomic(path, page)
    return ReportRun(report=report, path=path, html=page)
