"""``neurofeat demo``: the plan of the commands it chains, and its closing summary.

The demo runs the same commands a user would type, through the same command-line
application, on a synthetic cohort whose truth is known: a planted causal signal
(tumour appearance carries IDH1 and the other markers) and a planted site shortcut
(at the training sites the scanner goes with MGMT methylation, at the held-out site the
other way round; :mod:`neurofeat.synth.shortcut`). This module holds what is more than
an argument list:

- :func:`demo_settings` fills the sizes of a full or ``--quick`` demo;
- :func:`demo_plan` turns them into the command lines, in order, leaving out (and
  saying why) the steps this installation cannot run;
- :func:`demo_summary` reads the finished store (the ``results``, ``comparisons`` and
  ``run_invariance`` / ``run_stability`` views) and the cohort card (``synth.json``) and
  returns a :class:`DemoSummary` whose :meth:`~DemoSummary.sentences` say in words what
  was found against what was planted. Every number in them is a stored number.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shlex
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neurofeat.store import RunInfo, Store, connect

__all__ = [
    "DEMO_EPOCHS",
    "DEMO_METHODS",
    "REFERENCE_BACKBONES",
    "SHORTCUT_STRENGTH",
    "BackboneScore",
    "DemoCapabilities",
    "DemoClock",
    "DemoPlan",
    "DemoSettings",
    "DemoStep",
    "DemoSummary",
    "FamilyDifference",
    "PlantedShortcut",
    "ShortcutReadout",
    "SiteSeparability",
    "StabilityChange",
    "SurvivalBySite",
    "available_cores",
    "cpu_seconds",
    "demo_plan",
    "demo_settings",
    "demo_summary",
    "write_summary",
]

#: The study's SSL methods; each is pretrained as ``<method>`` and ``<method>_dro``.
DEMO_METHODS: tuple[str, ...] = ("byol", "dino", "mae", "moco")
#: Every method ``neurofeat pretrain`` knows (the demo accepts any of them).
KNOWN_METHODS: tuple[str, ...] = ("byol", "dino", "mae", "moco", "simclr")
#: Floor, classical baseline and ceiling next to the learnt backbones.
REFERENCE_BACKBONES: tuple[str, ...] = ("oracle", "random", "radiomics")
#: Strength of the planted site shortcut (synth --shortcut): a scanner-only encoder
#: scores AUC about 1/2 + S/2 = 0.9 at the training sites and 0.1 at the held-out site.
SHORTCUT_STRENGTH: float = 0.8
#: The marker the site shortcut is tied to (synth's default).
SHORTCUT_MARKER: str = "mgmt"
#: The headline marker of the summary: planted through tumour appearance only.
HEADLINE_TASK: str = "idh1"
#: Recipe of issue 14 (extract/recipes.py) for the learnt encoders.
RECIPE: str = "cpu-demo"
#: The patient whose Grad-CAM map the demo draws (synth's first patient of siteA).
EXPLAINED_PATIENT: str = "siteA-0001"
#: Encoder and grid of the demo (the recipe's; also the random-init reference's).
ARCH, WIDEN, SIZE, SPACING = "resnet10", 0.25, 32, 6.0
#: Pretraining epochs of the full demo: 6 of the recipe's 8, so that it stays well under 10
#: minutes on 2 cores (measured on an idle 2-core machine with two commands at a time:
#: 6 min 09 s, 713 s of CPU; with 8 epochs 9 min 34 s while other jobs shared the machine,
#: pretraining 642 s of CPU, about 8 minutes idle). BYOL's learning curve on the demo cohort
#: (``--curve-every 1``; IDH1 AUC of a 5-fold probe at epochs 0-8): 0.63, 0.77, 0.79, 0.77,
#: 0.79, 0.80, 0.80, 0.79, 0.80; site balanced accuracy 0.80, 0.94, 0.91, 0.82, 0.80,
#: 0.66, 0.66, 0.62, 0.57: the marker is learnt by epoch 2, the site fades from epoch 5 on.
#: ``--epochs 8`` runs the recipe's full schedule.
DEMO_EPOCHS: int = 6


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run.

    Attributes
    ----------
    out : Path
        Folder of the cohort (``cohort/``), models, volume cache and store (``store/``).
    quick : bool
        The ``--quick`` sizes (see :func:`demo_settings`).
    n : int
        Synthetic patients.
    shortcut : float
        Strength of the planted site shortcut (0 = none).
    methods : tuple of str
        SSL methods, each pretrained as base and ``_dro`` twin.
    epochs : int or None
        Pretraining epochs (None: the recipe's).
    repeats, folds : int
        Cross-validation of the probes and comparisons.
    bootstrap : int
        Bootstrap resamples of the intervals that use one.
    perturb : str
        ``extract --perturb`` specification of the stability analysis.
    seed : int
        Seed of the cohort, the training and the statistics.
    jobs : int
        Commands run side by side, each in its own one-thread process (1: one after the
        other in this process).
    """

    out: Path
    quick: bool
    n: int
    shortcut: float
    methods: tuple[str, ...]
    epochs: int | None
    repeats: int
    folds: int
    bootstrap: int
    perturb: str
    seed: int
    jobs: int = 1

    @property
    def cohort(self) -> Path:
        return self.out / "cohort"

    @property
    def store(self) -> Path:
        return self.out / "store"

    @property
    def models(self) -> Path:
        return self.out / "models"

    @property
    def cache(self) -> Path:
        return self.out / "cache"

    @property
    def report(self) -> Path:
        return self.out / "report.html"

    @property
    def families(self) -> bool:
        """True when the base/dro families are complete (``stats compare base dro``)."""
        return set(self.methods) >= set(DEMO_METHODS)

    @property
    def backbones(self) -> tuple[str, ...]:
        return tuple(name for method in self.methods for name in (method, f"{method}_dro"))

    @property
    def stability_pair(self) -> tuple[str, str]:
        """The base/DRO pair whose perturbed embeddings are extracted (dino if trained)."""
        method = "dino" if "dino" in self.methods else self.methods[0]
        return method, f"{method}_dro"


def demo_settings(out: str | Path = "demo", *, quick: bool = False, n: int | None = None,
                  shortcut: bool = True, methods: Sequence[str] | str | None = None,
                  epochs: int | None = None, bootstrap: int | None = None,
                  seed: int = 0, jobs: int | None = None) -> DemoSettings:
    """The sizes of a full or ``--quick`` demo; an argument given explicitly wins.

    Full: 240 patients, the four base/DRO pairs with the recipe for :data:`DEMO_EPOCHS` (6)
    of its 8 epochs, 2x5-fold CV, 500 bootstrap resamples, three perturbations (Gibbs, bias
    field, contrast). Quick: 120 patients, one pair (dino, dino_dro) for 1 epoch, 1x5-fold
    CV, 200 resamples, one perturbation (Gibbs). Both run as many commands side by side as
    the machine has cores (``jobs``).

    Raises
    ------
    ValueError
        An unknown method, fewer than 30 patients, or a non-positive epoch/bootstrap count.
    """
    if methods is None:
        chosen = ("dino",) if quick else DEMO_METHODS
    else:
        parts = methods.split(",") if isinstance(methods, str) else list(methods)
        chosen = tuple(dict.fromkeys(m.strip().lower() for m in parts if m.strip()))
    unknown = [m for m in chosen if m not in KNOWN_METHODS]
    if unknown or not chosen:
        raise ValueError(f"--methods: unknown {', '.join(unknown) or repr(methods)}; choose from "
                         f"{', '.join(KNOWN_METHODS)} (comma-separated)")
    n_patients = n if n is not None else (120 if quick else 240)
    if n_patients < 30:
        raise ValueError(f"--n {n_patients}: the demo needs at least 30 patients (three sites, "
                         "leave-one-site-out and survival per site)")
    if epochs is not None and epochs < 1:
        raise ValueError(f"--epochs {epochs}: use 1 or more")
    if bootstrap is not None and bootstrap < 10:
        raise ValueError(f"--bootstrap {bootstrap}: use 10 or more")
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs {jobs}: use 1 or more")
    return DemoSettings(
        out=Path(out), quick=quick, n=n_patients,
        shortcut=SHORTCUT_STRENGTH if shortcut else 0.0, methods=chosen,
        epochs=epochs if epochs is not None else (1 if quick else DEMO_EPOCHS),
        repeats=1 if quick else 2, folds=5,
        bootstrap=bootstrap if bootstrap is not None else (200 if quick else 500),
        perturb="gibbs:0.3" if quick else "gibbs:0.3,bias:0.3,contrast:1.5",
        seed=seed, jobs=jobs if jobs is not None else available_cores())


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class DemoCapabilities:
    """What this installation's command line offers that the demo can use.

    Built from the command line's surface (command path -> option names) with
    :meth:`from_surface`, so a demo on an older or partial installation leaves a step
    out and says so instead of failing half-way.
    """

    recipe: bool = True
    reference_backbones: bool = True
    radiomics_library: bool = True
    loso_compare: bool = True
    report: bool = True

    @classmethod
    def from_surface(cls, surface: Mapping[str, Collection[str]]) -> DemoCapabilities:
        """Capabilities from ``{"stats compare": {"--protocol", ...}, "report": {...}}``."""
        def has(command: str, option: str | None = None) -> bool:
            return command in surface and (option is None or option in surface[command])

        return cls(recipe=has("pretrain", "--recipe"),
                   reference_backbones=has("extract", "--name"),
                   radiomics_library=importlib.util.find_spec("radiomics") is not None,
                   loso_compare=has("stats compare", "--protocol"),
                   report=has("report"))


@dataclass(frozen=True)
class DemoStep:
    """One command of the demo: a stage name, a title and the arguments after ``neurofeat``.

    ``after`` holds the indices (in the plan) of the steps whose output this one reads:
    a step may start as soon as those have finished, which is what lets ``--jobs 2`` run
    independent commands side by side.
    """

    stage: str
    title: str
    args: tuple[str, ...]
    after: tuple[int, ...] = ()

    def command_line(self) -> str:
        """The step as a user would type it."""
        return "neurofeat " + shlex.join(self.args)


@dataclass(frozen=True)
class DemoPlan:
    """The demo's commands in order, and the steps left out with the reason."""

    settings: DemoSettings
    steps: tuple[DemoStep, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def stages(self) -> list[str]:
        """The distinct stages in order (for a progress line)."""
        return list(dict.fromkeys(step.stage for step in self.steps))

    def ready(self, finished: Collection[int], started: Collection[int]) -> list[int]:
        """Indices of the steps not yet started whose prerequisites have all finished,
        in plan order (the order is the priority: the plan lists each encoder's extraction
        right after its pretraining and the long comparisons before the short analyses)."""
        done, begun = set(finished), set(started)
        return [i for i, step in enumerate(self.steps)
                if i not in begun and all(j in done for j in step.after)]

    def preamble(self) -> list[str]:
        """What the user is about to see: a synthetic cohort, what is planted, how long."""
        s = self.settings
        lines = [
            (f"[bold]This demo runs on a SYNTHETIC cohort[/] (neurofeat synth, seed {s.seed}): {s.n} simulated "
             "glioma patients at 3 sites. None of it is patient data; every label was planted, and the "
             f"truth it was generated from is in {s.cohort / 'truth.parquet'} and {s.cohort / 'synth.json'}."),
            ("Planted: the markers (IDH1, MGMT, 1p/19q, ...) change the tumour's appearance; that is the "
             "signal an encoder should find."),
        ]
        if s.shortcut > 0:
            lines.append(
                f"Planted shortcut (strength {s.shortcut:g}): every site runs two scanners; at the training "
                f"sites scanner B is used more often for {SHORTCUT_MARKER.upper()}-positive patients, at the "
                "held-out site (the last) less often. An encoder that learnt the scanner looks good in "
                "cross-validation and fails at the held-out site.")
        else:
            lines.append("No site shortcut planted (--no-shortcut).")
        budget = ("about a minute" if s.quick else
                  "about 6 minutes (pretraining eight encoders is most of it)")
        lines.append(f"{len(self.steps)} commands, {s.jobs} at a time: {budget} on an idle 2-core CPU; "
                     f"everything lands in {s.out}.")
        return lines


def demo_plan(settings: DemoSettings, capabilities: DemoCapabilities | None = None) -> DemoPlan:
    """The commands of the demo, in order, each with the steps it must wait for.

    Parameters
    ----------
    settings : DemoSettings
    capabilities : DemoCapabilities, optional
        What the command line offers (default: everything).

    Returns
    -------
    DemoPlan
    """
    s, cap = settings, capabilities or DemoCapabilities()
    store, seed = ["--store", str(s.store)], ["--seed", str(s.seed)]
    cache = ["--cache-dir", str(s.cache)]
    steps: list[DemoStep] = []
    skipped: list[tuple[str, str]] = []
    made: dict[str, int] = {}  # what a step produces -> its index

    def add(stage: str, title: str, *args: str, makes: str | None = None,
            needs: Sequence[str] = ()) -> None:
        after = tuple(sorted({made[name] for name in needs if name in made}))
        if makes is not None:
            made[makes] = len(steps)
        steps.append(DemoStep(stage, title, tuple(args), after))

    synth = ["synth", "--out", str(s.cohort), "--n", str(s.n), "--size", str(SIZE),
             "--spacing", f"{SPACING:g}", *seed]
    if s.shortcut > 0:
        synth += ["--shortcut", f"{s.shortcut:g}", "--shortcut-markers", SHORTCUT_MARKER]
    add("cohort", "synthetic cohort", *synth, makes="cohort")
    # --discover also registers the tumour segmentations (radiomics reads the tumour there)
    add("cohort", "ingest", "ingest", "--discover", str(s.cohort / "images"),
        "--clinical", str(s.cohort / "clinical.csv"), *store, makes="store", needs=["cohort"])
    add("references", "oracle (true latent traits, a ceiling)", "store", "import",
        "--backbone", "oracle", "--table", str(s.cohort / "oracle_traits.csv"), *store,
        makes="emb:oracle", needs=["store"])

    # learnt encoders: the recipe of issue 14 where it exists, else its settings spelled out;
    # each extraction right after its pretraining (the plan order is the priority)
    stable = set(s.stability_pair)
    for name in s.backbones:
        method, dro = name.removesuffix("_dro"), name.endswith("_dro")
        args = ["pretrain", "--method", method, *store, "--models-dir", str(s.models), *seed, *cache]
        if cap.recipe:
            args += ["--recipe", RECIPE]
        else:
            args += ["--arch", ARCH, "--widen-factor", f"{WIDEN:g}", "--input-size", str(SIZE),
                     "--spacing", f"{SPACING:g}", "--batch-size", "8", "--lr", "1e-3",
                     "--epochs", str(s.epochs or 8)]
        if cap.recipe and s.epochs is not None:
            args += ["--epochs", str(s.epochs)]
        if dro:
            args += ["--dro", "--group-by", "site"]
        add("pretrain", f"pretrain {name}", *args, makes=f"model:{name}", needs=["store"])
        args = ["extract", "--backbone", name, *store, "--models-dir", str(s.models), *cache, *seed]
        if name in stable:
            args += ["--perturb", f"none,{s.perturb}"]
        add("extract", f"extract {name}" + (" (clean and perturbed)" if name in stable else ""), *args,
            makes=f"emb:{name}", needs=[f"model:{name}"])

    references = ["oracle"]
    if cap.reference_backbones:
        add("references", "random-init encoder (a floor)", "extract", "--backbone", "random",
            "--arch", ARCH, "--widen-factor", f"{WIDEN:g}", "--input-size", str(SIZE),
            "--spacing", f"{SPACING:g}", *store, *cache, *seed, makes="emb:random", needs=["store"])
        references.append("random")
        if cap.radiomics_library:
            add("references", "IBSI radiomics (the classical baseline)", "extract", "--backbone",
                "radiomics", *store, makes="emb:radiomics", needs=["store"])
            references.append("radiomics")
        else:
            skipped.append(("radiomics backbone",
                            "the radiomics library is not installed (pip install -e '.[radiomics]')"))
    else:
        skipped.append(("random and radiomics backbones",
                        "this neurofeat's extract has no reference backbones"))
    learnt = [f"emb:{name}" for name in s.backbones]
    every = learnt + [f"emb:{name}" for name in references]

    # the long comparisons first, so they start as soon as the last encoder is extracted
    cv = ["--repeats", str(s.repeats), "--folds", str(s.folds), "--bootstrap", str(s.bootstrap), *seed]
    tasks = (HEADLINE_TASK, SHORTCUT_MARKER)
    pairs = [("base", "dro")] if s.families else [(m, f"{m}_dro") for m in s.methods]
    compare_tasks = ["all"] if not s.quick else list(tasks)
    for a, b in pairs:
        both = learnt if (a, b) == ("base", "dro") else [f"emb:{a}", f"emb:{b}"]
        for task in compare_tasks:
            add("compare", f"stats compare {a} {b} --task {task}", "stats", "compare", a, b,
                "--task", task, *cv, *store, needs=both)
        if cap.loso_compare:
            for task in compare_tasks:
                add("compare", f"stats compare {a} {b} --task {task}, leave one site out",
                    "stats", "compare", a, b, "--task", task, "--protocol", "loso",
                    "--bootstrap", str(s.bootstrap), *seed, *store, needs=both)
    if not cap.loso_compare:
        skipped.append(("leave-one-site-out comparison", "this neurofeat's stats compare has no --protocol"))
    if s.quick:
        add("compare", "stats compare on overall survival", "stats", "compare", *pairs[0],
            "--task", "os", *cv, *store, needs=[f"emb:{x}" for x in pairs[0]])

    for name in references:
        for task in tasks:
            add("probe", f"probe {name} on {task}", "probe", "--backbone", name, "--task", task,
                *cv, "--no-knn", "--fractions", "none", *store, needs=[f"emb:{name}"])
            add("probe", f"probe {name} on {task}, leave one site out", "probe", "--backbone", name,
                "--task", task, "--protocol", "loso", "--bootstrap", str(s.bootstrap), *seed,
                "--no-knn", *store, needs=[f"emb:{name}"])

    # one learnt encoder probed alone: ROC per site and the data-fraction curve
    shown = s.stability_pair[0]
    add("probe", f"probe {shown} on {HEADLINE_TASK} (ROC, data-fraction curve)", "probe",
        "--backbone", shown, "--task", HEADLINE_TASK, *cv, "--no-knn", *store, needs=[f"emb:{shown}"])

    for name in (*s.stability_pair, "oracle"):
        add("survival", f"survival {name} (per site)", "survival", "--backbone", name, "--task", "os",
            "--repeats", str(s.repeats), "--bootstrap", str(s.bootstrap), "--min-patients", "10",
            *seed, *store, needs=[f"emb:{name}"])
    add("trust", "site invariance of every backbone", "invariance", "--label", HEADLINE_TASK,
        "--repeats", "1", "--bootstrap", str(s.bootstrap), *seed, *store, needs=every)
    add("trust", f"calibration of {shown} on {HEADLINE_TASK}", "calibrate", "--backbone",
        shown, "--task", HEADLINE_TASK, *cv, *store, needs=[f"emb:{shown}"])
    # synth names patients <site>-<number>: the first patient of the first site
    add("trust", f"Grad-CAM of {shown} on {HEADLINE_TASK}", "explain", "--backbone",
        shown, "--task", HEADLINE_TASK, "--patient", EXPLAINED_PATIENT, "--models-dir",
        str(s.models), "--random-maps", "50", *seed, *store, needs=[f"emb:{shown}"])
    stability = ["stability"]
    for name in s.stability_pair:
        stability += ["--backbone", name]
    add("trust", "perturbation stability", *stability, "--task", HEADLINE_TASK, *cv, *store,
        needs=[f"emb:{name}" for name in s.stability_pair])
    if cap.report:
        # the report reads every run: it waits for all the others
        steps.append(DemoStep("report", "HTML report", ("report", *store, "--out", str(s.report), "--title",
                                                        f"neurofeat demo on a synthetic cohort ({s.n} patients)"),
                              tuple(range(len(steps)))))
    else:
        skipped.append(("HTML report", "this neurofeat has no report command"))
    return DemoPlan(settings=s, steps=tuple(steps), skipped=tuple(skipped))



# ----------------------------------------------------------------------------- timing
def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system), in seconds."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class DemoClock:
    """Wall and CPU time of the demo, per stage (what the demo prints as it goes)."""

    def __init__(self) -> None:
        self.started, self.cpu_started = time.perf_counter(), cpu_seconds()
        self.stages: dict[str, list[float]] = {}  # stage -> [wall, cpu]

    def heading(self, index: int, plan: DemoPlan) -> str:
        """``[i/N] title (elapsed, CPU so far)`` for step ``index`` (1-based)."""
        return f"[{index}/{len(plan.steps)}] {plan.steps[index - 1].title}  ({self.elapsed_text()})"

    def elapsed_text(self) -> str:
        """``elapsed m min s s, CPU n s`` since the demo started."""
        elapsed, used = time.perf_counter() - self.started, cpu_seconds() - self.cpu_started
        return f"{elapsed // 60:.0f} min {elapsed % 60:02.0f} s, CPU {used:.0f} s"

    def add(self, name: str, wall: float, cpu: float) -> None:
        """Add one command's wall and CPU time to stage ``name`` (commands run side by
        side: a stage's wall time is then the sum over its commands)."""
        spent = self.stages.setdefault(name, [0.0, 0.0])
        spent[0] += wall
        spent[1] += cpu

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the wall and CPU time of the enclosed block to stage ``name``."""
        wall, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - wall, cpu_seconds() - cpu)

    def closing(self) -> str:
        """Total and per-stage wall/CPU time, and the load average now."""
        total, used = time.perf_counter() - self.started, cpu_seconds() - self.cpu_started
        stages = ", ".join(f"{name} {wall:.0f} s (CPU {cpu:.0f} s)" for name, (wall, cpu) in self.stages.items())
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        return (f"demo finished in {total // 60:.0f} min {total % 60:02.0f} s: {stages}; CPU time {used:.0f} s "
                f"in all, load average {load:.1f} at the end.")


# ----------------------------------------------------------------------------- summary
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
