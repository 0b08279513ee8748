"""``neurofeat demo``'s closing summary: what the demo found, next to what was planted.

:func:`demo_summary` reads the finished store (the ``results``, ``comparisons`` and
``run_invariance`` / ``run_stability`` views) and the cohort card (``synth.json``) and
returns a :class:`DemoSummary` whose :meth:`~DemoSummary.sentences` say in words what
was found against what was planted. Every number in them is a stored number.
:func:`write_summary` stores it as the ``demo`` run's ``summary`` table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neurofeat.runs.demo import (HEADLINE_TASK, KNOWN_METHODS, REFERENCE_BACKBONES,
                                 SHORTCUT_MARKER, DemoSettings)
from neurofeat.store import RunInfo, Store, connect

__all__ = [
    "BackboneScore",
    "DemoSummary",
    "FamilyDifference",
    "PlantedShortcut",
    "ShortcutReadout",
    "SiteSeparability",
    "StabilityChange",
    "SurvivalBySite",
    "demo_summary",
    "write_summary",
]


@dataclass(frozen=True)
class BackboneScore:
    """One backbone's primary (calibrated) estimate of a metric, as stored."""

    backbone: str
    task: str
    protocol: str
    site: str
    metric: str
    estimate: float
    ci_low: float
    ci_high: float

    @property
    def found(self) -> bool:
        """The interval lies above chance (0.5 for AUC and balanced accuracy)."""
        return bool(self.ci_low > 0.5)


@dataclass(frozen=True)
class ShortcutReadout:
    """A shortcut marker's AUC in cross-validation and at the held-out site.

    ``cv_auc`` is the cross-validated AUC over all sites; ``held_out_auc`` the AUC at
    the held-out site of the probe trained on the other sites (leave-one-site-out).
    For a family (``base``, ``dro``) both are the mean over its members.
    """

    marker: str
    backbone: str
    held_out_site: str
    cv_auc: float
    held_out_auc: float
    n_members: int = 1


@dataclass(frozen=True)
class PlantedShortcut:
    """What the cohort card says an encoder would score on a shortcut marker at a site."""

    marker: str
    site: str
    role: str
    auc_spurious_only: float
    auc_causal_only: float


@dataclass(frozen=True)
class SiteSeparability:
    """Balanced accuracy of the site-classifier probe on one backbone (chance 1/k)."""

    backbone: str
    estimate: float
    ci_low: float
    ci_high: float
    chance: float


@dataclass(frozen=True)
class FamilyDifference:
    """The primary paired difference A - B on one task (pooled row for families)."""

    task: str
    metric: str
    protocol: str
    backbone_a: str
    backbone_b: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float

    @property
    def significant(self) -> bool:
        """Holm-adjusted p below 0.05 (the p itself where nothing was adjusted)."""
        p = self.p_holm if not math.isnan(self.p_holm) else self.p_value
        return bool(p < 0.05)


@dataclass(frozen=True)
class SurvivalBySite:
    """Harrell's C of one backbone's Cox model at one site ('all' = pooled)."""

    backbone: str
    site: str
    estimate: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class StabilityChange:
    """Change of the clean-trained probe's AUC under one perturbation."""

    backbone: str
    perturbation: str
    clean: float
    perturbed: float
    delta: float
    delta_ci_low: float
    delta_ci_high: float


@dataclass(frozen=True)
class DemoSummary:
    """What the demo found, next to what the synthetic cohort planted.

    Every number is read from the store (views ``results``, ``comparisons``,
    ``run_invariance``, ``run_stability``, ``patients``) or from the cohort's card and
    truth (``synth.json``, ``truth.parquet``); :meth:`sentences` puts them into words.

    Attributes
    ----------
    synthetic : bool
        A synthetic cohort's card was found next to the store.
    n_patients : int
    sites : tuple of str
    headline_task : str
    scores : tuple of BackboneScore
        Primary AUC rows of the headline and shortcut tasks (cv over all sites, and
        leave-one-site-out per held-out site), newest per backbone.
    shortcut_strength : float
        0 when no shortcut was planted.
    held_out_site : str or None
    planted_shortcut : tuple of PlantedShortcut
    shortcut : tuple of ShortcutReadout
    separability : tuple of SiteSeparability
    differences : tuple of FamilyDifference
        Base vs DRO, primary rows of every task (cv and loso pooled).
    survival : tuple of SurvivalBySite
    planted_survival : tuple of SurvivalBySite
        Harrell's C of the generating log hazard (backbone ``truth``), pooled and per site.
    stability : tuple of StabilityChange
    """

    synthetic: bool
    n_patients: int
    sites: tuple[str, ...]
    headline_task: str = HEADLINE_TASK
    scores: tuple[BackboneScore, ...] = ()
    shortcut_strength: float = 0.0
    held_out_site: str | None = None
    planted_shortcut: tuple[PlantedShortcut, ...] = ()
    shortcut: tuple[ShortcutReadout, ...] = ()
    separability: tuple[SiteSeparability, ...] = ()
    differences: tuple[FamilyDifference, ...] = ()
    survival: tuple[SurvivalBySite, ...] = ()
    planted_survival: tuple[SurvivalBySite, ...] = ()
    stability: tuple[StabilityChange, ...] = ()

    # ------------------------------------------------------------------ look-ups
    def score(self, backbone: str, task: str, protocol: str = "cv",
              site: str = "all") -> BackboneScore | None:
        """The stored primary AUC of ``backbone`` on ``task`` (None when not run)."""
        for row in self.scores:
            if (row.backbone, row.task, row.protocol, row.site) == (backbone, task, protocol, site):
                return row
        return None

    def family_separability(self, family: str) -> float | None:
        """Mean site-probe balanced accuracy over a family's members (base or dro)."""
        values = [row.estimate for row in self.separability if _family(row.backbone) == family]
        return sum(values) / len(values) if values else None

    # ------------------------------------------------------------------ words
    def sections(self) -> list[tuple[str, str]]:
        """``(topic, sentence)`` in reading order; every number is one of the attributes."""
        return [("cohort", self._cohort_sentence()),
                *(("headline", s) for s in self._headline_sentences()),
                *(("shortcut", s) for s in self._shortcut_sentences()),
                *(("separability", s) for s in self._separability_sentences()),
                *(("difference", s) for s in self._difference_sentences()),
                *(("survival", s) for s in self._survival_sentences()),
                *(("stability", s) for s in self._stability_sentences())]

    def sentences(self) -> list[str]:
        """The summary in words; every number is one of the attributes."""
        return [sentence for _, sentence in self.sections()]

    def to_frame(self) -> pd.DataFrame:
        """One row per sentence: position, topic, sentence (the stored ``summary`` table)."""
        rows = self.sections()
        return pd.DataFrame({"position": list(range(1, len(rows) + 1)),
                             "topic": [topic for topic, _ in rows],
                             "sentence": [sentence for _, sentence in rows]})

    def render(self) -> str:
        """The sentences as one text, a bullet per line."""
        return "\n".join(f"- {sentence}" for sentence in self.sentences())

    def _cohort_sentence(self) -> str:
        kind = "a SYNTHETIC cohort (neurofeat synth)" if self.synthetic else "this store's cohort"
        sentence = (f"Data: {kind} of {self.n_patients} patients at {len(self.sites)} sites "
                    f"({', '.join(self.sites)})")
        if self.synthetic:
            sentence += "; every label below was planted, so what was found can be checked against it"
        return sentence + "."

    def _headline_sentences(self) -> list[str]:
        task = self.headline_task
        rows = [row for row in self.scores if row.task == task and row.protocol == "cv" and row.site == "all"]
        if not rows:
            return [f"{task.upper()}: no probe or comparison of it is in the store."]
        learnt = sorted((r for r in rows if r.backbone not in REFERENCE_BACKBONES),
                        key=lambda r: -r.estimate)
        found = [r for r in rows if r.found and r.backbone not in ("oracle",)]
        found.sort(key=lambda r: -r.estimate)
        if found:
            words = " and ".join(f"{r.backbone} {_auc(r)}" for r in found[:2])
            sentence = f"{task.upper()} (planted in the tumour's appearance) was found by {words}"
        else:
            sentence = f"{task.upper()} (planted in the tumour's appearance) was not found: no interval lies above 0.5"
        refs = [f"{name} {_auc(self.score(name, task))}" for name in ("oracle", "random", "radiomics")
                if self.score(name, task) is not None and all(name != r.backbone for r in found[:2])]
        if refs:
            sentence += f" ({', '.join(refs)})"
        sentence += "."
        if learnt:
            n_found = sum(r.found for r in learnt)
            sentence += (f" Learnt encoders ranged from {learnt[-1].backbone} {learnt[-1].estimate:.2f} "
                         f"to {learnt[0].backbone} {learnt[0].estimate:.2f}"
                         f"; {n_found} of {len(learnt)} {'has' if n_found == 1 else 'have'} an interval above 0.5.")
        return [sentence]

    def _shortcut_sentences(self) -> list[str]:
        if self.shortcut_strength <= 0:
            return ["No site shortcut was planted (--no-shortcut), so leave-one-site-out should cost little."]
        out = []
        site = self.held_out_site
        for marker in dict.fromkeys(p.marker for p in self.planted_shortcut):
            planted = [p for p in self.planted_shortcut if p.marker == marker]
            train = [p for p in planted if p.role == "train"]
            held = [p for p in planted if p.role == "held_out"]
            if train and held:
                spurious_train = sum(p.auc_spurious_only for p in train) / len(train)
                causal_train = sum(p.auc_causal_only for p in train) / len(train)
                out.append(
                    f"Planted shortcut on {marker.upper()} (strength {self.shortcut_strength:g}): an encoder "
                    f"that saw only the scanner would score AUC {spurious_train:.2f} at the training sites and "
                    f"{held[0].auc_spurious_only:.2f} at the held-out {held[0].site}; one that saw only the "
                    f"tumour {causal_train:.2f} and {held[0].auc_causal_only:.2f}.")
            readouts = [r for r in self.shortcut if r.marker == marker]
            if readouts:
                parts = [f"{r.backbone} {r.cv_auc:.2f} → {r.held_out_auc:.2f}" for r in readouts]
                fell = [r for r in readouts if r.held_out_auc < r.cv_auc - 0.05]
                verdict = (f"it fell for {', '.join(r.backbone for r in fell)}" if fell
                           else "no backbone lost more than 0.05")
                out.append(f"Found: {marker.upper()} AUC cross-validated → at the held-out {site} "
                           f"(probe trained on the other sites): {'; '.join(parts)}; {verdict}.")
            else:
                out.append(f"No leave-one-site-out result for {marker.upper()} is in the store.")
        return out

    def _separability_sentences(self) -> list[str]:
        if not self.separability:
            return ["Site invariance was not measured (no run_invariance rows)."]
        chance = self.separability[0].chance
        base, dro = self.family_separability("base"), self.family_separability("dro")
        pairs = [(b, d) for b in self.separability for d in self.separability
                 if _family(b.backbone) == "base" and d.backbone == f"{b.backbone}_dro"]
        refs = ", ".join(f"{r.backbone} {r.estimate:.2f}" for r in self.separability
                         if r.backbone in REFERENCE_BACKBONES)
        if base is None or dro is None or not pairs:
            values = ", ".join(f"{r.backbone} {r.estimate:.2f}" for r in self.separability)
            return [f"Site separability (site-probe balanced accuracy, chance {chance:.2f}): {values}."]
        lower = sum(d.estimate < b.estimate for b, d in pairs)
        if lower == len(pairs):
            did = "reduced site separability" + (f" in all {lower} pairs" if lower > 1 else "")
        elif lower:
            did = f"reduced site separability in {lower} of {len(pairs)} pairs"
        else:
            did = "did not reduce site separability"
        sentence = (f"DRO {did}: site-probe balanced accuracy base {base:.2f} vs dro {dro:.2f} "
                    f"({'mean over the pairs; ' if len(pairs) > 1 else ''}chance {chance:.2f})")
        return [sentence + (f"; references {refs}." if refs else ".")]

    def _difference_sentences(self) -> list[str]:
        out = []
        for protocol, label in (("cv", "cross-validated"), ("loso", "leave-one-site-out (mean over held-out sites)")):
            rows = [d for d in self.differences if d.protocol == protocol]
            if not rows:
                continue
            a, b = rows[0].backbone_a, rows[0].backbone_b
            significant = [d for d in rows if d.significant]
            if significant:
                words = "; ".join(f"{d.task} {d.metric} {d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"
                                  for d in significant)
                head = f"{len(significant)} of {len(rows)} task(s) differ (Holm p < 0.05): {words}"
            else:
                largest = max(rows, key=lambda d: abs(d.diff))
                head = (f"no task differs (Holm p ≥ 0.05 on all {len(rows)}); largest: {largest.task} "
                        f"{largest.metric} {largest.diff:+.3f} [{largest.ci_low:+.3f}, {largest.ci_high:+.3f}]")
            out.append(f"{a} − {b}, {label}, calibrated test: {head}.")
        return out or ["Base and DRO were not compared (no primary rows in comparisons)."]

    def _survival_sentences(self) -> list[str]:
        if not self.survival:
            return []
        out = []
        for backbone in dict.fromkeys(r.backbone for r in self.survival):
            rows = [r for r in self.survival if r.backbone == backbone]
            pooled = [r for r in rows if r.site == "all"]
            per_site = ", ".join(f"{r.site} {r.estimate:.2f}" for r in rows if r.site != "all")
            head = f"{pooled[0].estimate:.2f} [{pooled[0].ci_low:.2f}, {pooled[0].ci_high:.2f}]" if pooled else "–"
            out.append(f"{backbone} {head}" + (f" ({per_site})" if per_site else ""))
        sentence = "Overall survival (IDH1 wild-type grade 4), Harrell's C: " + "; ".join(out)
        truth = [r for r in self.planted_survival if r.site == "all"]
        if truth:
            per_site = ", ".join(f"{r.site} {r.estimate:.2f}" for r in self.planted_survival if r.site != "all")
            sentence += (f"; the generating hazard itself (age, MGMT and tumour volume, not all "
                         f"visible in the images) scores {truth[0].estimate:.2f} ({per_site})")
        return [sentence + "."]

    def _stability_sentences(self) -> list[str]:
        if not self.stability:
            return []
        parts = [f"{r.backbone} {r.perturbation} {r.delta:+.3f} [{r.delta_ci_low:+.3f}, {r.delta_ci_high:+.3f}]"
                 for r in self.stability]
        hurt = [r for r in self.stability if r.delta_ci_high < 0]
        verdict = (f"{len(hurt)} of {len(self.stability)} changes lie below 0" if hurt
                   else "no interval lies below 0")
        return [(f"Perturbation stability ({self.headline_task.upper()} AUC, perturbed − clean): "
                 f"{'; '.join(parts)}; {verdict}.")]


def _family(backbone: str) -> str | None:
    method = backbone.removesuffix("_dro")
    if method not in KNOWN_METHODS:
        return None
    return "dro" if backbone.endswith("_dro") else "base"


def _auc(row: BackboneScore | None) -> str:
    return "–" if row is None else f"{row.estimate:.2f}"


def _frame(con, sql: str, params: Sequence | None = None) -> pd.DataFrame:
    return con.execute(sql, list(params or [])).df()


_NEWEST = "QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY created_at DESC) = 1"


def _scores(con, tasks: Sequence[str]) -> list[BackboneScore]:
    """Primary AUC rows: both sides of every comparison, else the backbone's probe run."""
    marks = ", ".join("?" for _ in tasks)
    probe = _frame(con, (
        "SELECT backbone, task, protocol, site, metric, estimate, ci_low, ci_high, created_at "
        "FROM results WHERE command = 'probe' AND \"primary\" AND metric = 'auc' "
        f"AND perturbation = 'none' AND coalesce(fraction, 1.0) = 1.0 AND probe <> 'knn' AND task IN ({marks})"),
        tasks)
    sides = [_frame(con, (
        f"SELECT backbone_{side} AS backbone, task, protocol, site, metric, estimate_{side} AS estimate, "
        f"ci_low_{side} AS ci_low, ci_high_{side} AS ci_high, created_at FROM comparisons "
        "WHERE \"primary\" AND metric = 'auc' AND NOT pooled AND perturbation = 'none' "
        f"AND coalesce(comparison, 'requested') = 'requested' AND task IN ({marks})"), tasks)
        for side in ("a", "b")]
    # a backbone compared with its twin is read from the comparison (the paired estimate on
    # the folds both sides share), otherwise from its own probe run; newest first
    frame = pd.concat([probe.assign(rank=1), *(side.assign(rank=0) for side in sides)], ignore_index=True)
    frame = frame[frame["site"] != "worst"].dropna(subset=["estimate"])
    frame = frame.sort_values(["rank", "created_at"], ascending=[True, False]).drop_duplicates(
        ["backbone", "task", "protocol", "site", "metric"])
    return [BackboneScore(r.backbone, r.task, r.protocol, r.site, r.metric, float(r.estimate),
                          float(r.ci_low), float(r.ci_high))
            for r in frame.sort_values(["task", "protocol", "backbone", "site"]).itertuples()]


def _shortcut_readouts(scores: Sequence[BackboneScore], markers: Sequence[str],
                       held_out: str) -> list[ShortcutReadout]:
    """CV AUC over all sites against the LOSO AUC at the held-out site, per backbone and family."""
    out: list[ShortcutReadout] = []
    for marker in markers:
        cv = {r.backbone: r.estimate for r in scores if (r.task, r.protocol, r.site) == (marker, "cv", "all")}
        held = {r.backbone: r.estimate for r in scores if (r.task, r.protocol, r.site) == (marker, "loso", held_out)}
        both = [b for b in cv if b in held]
        for family in ("base", "dro"):
            members = [b for b in both if _family(b) == family]
            if len(members) > 1:
                out.append(ShortcutReadout(marker, family, held_out,
                                           sum(cv[b] for b in members) / len(members),
                                           sum(held[b] for b in members) / len(members), len(members)))
            elif members:
                out.append(ShortcutReadout(marker, members[0], held_out, cv[members[0]], held[members[0]]))
        out += [ShortcutReadout(marker, b, held_out, cv[b], held[b])
                for b in REFERENCE_BACKBONES if b in both]
    return out


def _separability(con) -> list[SiteSeparability]:
    if "run_invariance" not in _views(con):
        return []
    frame = _frame(con, (
        "SELECT backbone, estimate, ci_low, ci_high, chance, created_at FROM run_invariance "
        "WHERE \"by\" = 'site' AND metric = 'site_probe_ba' AND coalesce(perturbation, 'none') = 'none' "
        + _NEWEST.format(keys="backbone") + " ORDER BY backbone"))
    return [SiteSeparability(r.backbone, float(r.estimate), float(r.ci_low), float(r.ci_high), float(r.chance))
            for r in frame.itertuples()]


def _differences(con) -> list[FamilyDifference]:
    """Primary base-vs-DRO rows: family pooled rows where families were compared, else pairs."""
    frame = _frame(con, (
        "SELECT task, metric, protocol, backbone_a, backbone_b, pooled, diff, diff_ci_low, diff_ci_high, "
        "p_value, p_holm, created_at FROM comparisons WHERE \"primary\" AND site = 'all' "
        "AND perturbation = 'none' AND coalesce(comparison, 'requested') = 'requested' "
        "AND metric IN ('auc', 'harrell_c', 'spearman') "
        + _NEWEST.format(keys="task, metric, protocol, backbone_a, backbone_b")))
    families = frame[(frame["backbone_a"] == "base") & (frame["backbone_b"] == "dro")]
    if families.empty:
        families = frame[frame["backbone_b"] == frame["backbone_a"] + "_dro"]
    families = families.sort_values(["protocol", "backbone_a", "task", "metric"])
    return [FamilyDifference(r.task, r.metric, r.protocol, r.backbone_a, r.backbone_b, float(r.diff),
                             float(r.diff_ci_low), float(r.diff_ci_high), float(r.p_value),
                             float(r.p_holm) if r.p_holm == r.p_holm and r.p_holm is not None else math.nan)
            for r in families.itertuples()]


def _survival(con) -> list[SurvivalBySite]:
    frame = _frame(con, (
        "SELECT backbone, site, estimate, ci_low, ci_high, n, created_at FROM results "
        "WHERE command = 'survival' AND \"primary\" AND metric = 'harrell_c' AND protocol = 'cv' "
        "AND perturbation = 'none' " + _NEWEST.format(keys="backbone, site")))
    frame = frame.assign(order=(frame["site"] != "all")).sort_values(["backbone", "order", "site"])
    return [SurvivalBySite(r.backbone, r.site, float(r.estimate), float(r.ci_low), float(r.ci_high), int(r.n))
            for r in frame.itertuples()]


def _stability(con, task: str) -> list[StabilityChange]:
    if "run_stability" not in _views(con):
        return []
    frame = _frame(con, (
        "SELECT s.backbone, s.perturbation, s.estimate, s.delta, s.delta_ci_low, s.delta_ci_high, s.created_at "
        "FROM run_stability AS s WHERE s.metric = 'auc' AND s.task = ? AND s.perturbation <> 'none' "
        + _NEWEST.format(keys="s.backbone, s.perturbation") + " ORDER BY s.backbone, s.perturbation"), [task])
    return [StabilityChange(r.backbone, r.perturbation, float(r.estimate - r.delta), float(r.estimate),
                            float(r.delta), float(r.delta_ci_low), float(r.delta_ci_high))
            for r in frame.itertuples()]


def _views(con) -> set[str]:
    return {row[0] for row in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}


def _planted(cohort: Path | None, con) -> dict:
    """The cohort card and the truth: shortcut settings and expected AUCs, and the
    generating hazard's C on overall survival."""
    found: dict = {"synthetic": False}
    if cohort is None or not (cohort / "synth.json").is_file():
        return found
    card = json.loads((cohort / "synth.json").read_text())
    found["synthetic"] = True
    shortcut = card.get("shortcut") or {}
    found["strength"] = float((shortcut.get("settings") or {}).get("strength", 0.0))
    found["expected"] = [PlantedShortcut(e["marker"], e["site"], e["role"], float(e["auc_spurious_only"]),
                                         float(e["auc_causal_only"]))
                         for e in shortcut.get("expected_auc", [])]
    truth_path = cohort / "truth.parquet"
    if not truth_path.is_file():
        return found
    from neurofeat.analysis.survival import harrell_c

    truth = pd.read_parquet(truth_path)
    registered = set(_frame(con, "SELECT patient_id FROM patients")["patient_id"])
    truth = truth[truth["patient_id"].isin(registered)]
    if "os_log_hazard" in truth:
        # the os task's cohort: IDH1 wild-type grade 4 (neurofeat.tasks)
        os_cohort = truth[(truth["idh1"] == False) & (truth["grade"] == 4)
                          & truth["os_days"].notna()]
        rows = []
        for site, group in [("all", os_cohort), *sorted(os_cohort.groupby("site"))]:
            if group["os_event"].astype(bool).sum() >= 2:
                c = harrell_c(group["os_days"].to_numpy(float), group["os_event"].to_numpy(bool),
                              group["os_log_hazard"].to_numpy(float))
                rows.append(SurvivalBySite("truth", str(site), float(c), math.nan, math.nan, len(group)))
        found["survival"] = rows
    return found


def write_summary(store: Store | str | Path, summary: DemoSummary, settings: DemoSettings) -> RunInfo:
    """Store the summary as a ``demo`` run (table ``summary``, view ``run_summary``), so
    the report can show it and SQL can query it."""
    from neurofeat.runs.tables import shape
    from neurofeat.store import write_run

    store = store if isinstance(store, Store) else Store.open(store)
    table = shape(summary.to_frame(), "demo", "summary", seed=settings.seed)
    params = {"n": settings.n, "methods": list(settings.methods), "epochs": settings.epochs,
              "repeats": settings.repeats, "folds": settings.folds, "bootstrap": settings.bootstrap,
              "shortcut": settings.shortcut, "quick": settings.quick, "seed": settings.seed,
              "jobs": settings.jobs, "synthetic": summary.synthetic}
    return write_run(store, "demo", {"summary": table}, params=params)


def demo_summary(store: Store | str | Path, cohort: str | Path | None = None) -> DemoSummary:
    """Read what the demo found from the store, next to what the cohort planted.

    Parameters
    ----------
    store : Store or path
        The demo's store (any store works; absent analyses give no sentence or say so).
    cohort : path, optional
        The synthetic cohort folder with ``synth.json`` and ``truth.parquet`` (default:
        ``cohort`` next to the store, the demo's layout).

    Returns
    -------
    DemoSummary
    """
    store = store if isinstance(store, Store) else Store.open(store)
    cohort_dir = Path(cohort) if cohort is not None else store.root.parent / "cohort"
    con = connect(store)
    try:
        sites_frame = _frame(con, "SELECT site, count(*) AS n FROM patients GROUP BY site ORDER BY site")
        sites = tuple(str(s) for s in sites_frame["site"])
        planted = _planted(cohort_dir, con)
        strength = planted.get("strength", 0.0)
        expected = planted.get("expected", [])
        held = next((p.site for p in expected if p.role == "held_out"), sites[-1] if sites else None)
        markers = tuple(dict.fromkeys(p.marker for p in expected)) or (SHORTCUT_MARKER,)
        scores = _scores(con, list(dict.fromkeys((HEADLINE_TASK, *markers))))
        return DemoSummary(
            synthetic=bool(planted["synthetic"]), n_patients=int(sites_frame["n"].sum()), sites=sites,
            scores=tuple(scores),
            shortcut_strength=strength, held_out_site=held if strength > 0 else None,
            planted_shortcut=tuple(expected),
            shortcut=tuple(_shortcut_readouts(scores, markers, held)) if strength > 0 and held else (),
            separability=tuple(_separability(con)), differences=tuple(_differences(con)),
            survival=tuple(_survival(con)), planted_survival=tuple(planted.get("survival", [])),
            stability=tuple(_stability(con, HEADLINE_TASK)))
    finally:
        con.close()
