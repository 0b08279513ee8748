"""``neurofeat demo``: its settings and the plan of the commands it chains.

The demo runs the same commands a user would type, through the same command-line
application, on a synthetic cohort whose truth is known: a planted causal signal
(tumour appearance carries IDH1 and the other markers) and a planted site shortcut
(at the training sites the scanner goes with MGMT methylation, at the held-out site the
other way round; :mod:`neurofeat.synth.shortcut`). This module holds what is more than
an argument list:

- :func:`demo_settings` fills the sizes of a full or ``--quick`` demo;
- :func:`demo_plan` turns them into the command lines, in order, leaving out (and
  saying why) the steps this installation cannot run;
- :class:`DemoClock` times its stages.

:mod:`~neurofeat.runs.demo_runner` runs the plan and
:mod:`~neurofeat.runs.demo_summary` reads what it found.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEMO_EPOCHS",
    "DEMO_METHODS",
    "REFERENCE_BACKBONES",
    "SHORTCUT_STRENGTH",
    "DemoCapabilities",
    "DemoClock",
    "DemoPlan",
    "DemoSettings",
    "DemoStep",
    "available_cores",
    "cpu_seconds",
    "demo_plan",
    "demo_settings",
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

