"""Running a demo plan's commands several at a time, each in its own process.

``neurofeat demo --jobs N`` (N > 1) starts every command of the plan as
``python -m neurofeat ...`` as soon as the steps it reads from have finished
(:meth:`~neurofeat.runs.demo.DemoPlan.ready`), at most N at once, each with one
thread (torch, OpenMP and BLAS), so N commands share N cores without oversubscribing
them. A command's output goes to its own log file; the caller is told when a step
starts and when it ends (wall and CPU time of that process, from ``os.wait4``). When a
step fails no new step starts, the running ones finish, and the failure is returned with
its log, so the caller can show it.

The store is safe for this: runs are staged and renamed, embeddings are written under a
per-backbone lock, and the volume cache writes each entry through a temporary file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from neurofeat.runs.demo import DemoPlan

__all__ = ["StepOutcome", "run_plan", "single_thread_env"]

#: Environment variables that pin a process to one thread.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@dataclass(frozen=True)
class StepOutcome:
    """One finished step.

    Attributes
    ----------
    index : int
        Position in the plan (0-based).
    returncode : int
        The command's exit status (0: success; negative: killed by that signal).
    wall, cpu : float
        Seconds from start to end, and CPU seconds (user + system) of the process.
    log : Path
        The command's output.
    """

    index: int
    returncode: int
    wall: float
    cpu: float
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the command's output."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def single_thread_env(base: Mapping[str, str] | None = None, columns: int = 120) -> dict[str, str]:
    """``base`` (default: this process's environment) with every thread pool set to one
    thread and a fixed terminal width for the logs."""
    env = dict(os.environ if base is None else base)
    env.update({name: "1" for name in THREAD_VARIABLES})
    env["COLUMNS"] = str(columns)
    return env


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def run_plan(plan: DemoPlan, jobs: int, log_dir: str | os.PathLike, *,
             on_start: Callable[[int], None] | None = None,
             on_finish: Callable[[StepOutcome], None] | None = None,
             command: tuple[str, ...] = (sys.executable, "-m", "neurofeat"),
             env: Mapping[str, str] | None = None, poll: float = 0.1) -> list[StepOutcome]:
    """Run the plan's steps, ``jobs`` processes at a time, in dependency order.

    Parameters
    ----------
    plan : DemoPlan
    jobs : int
        Processes at once (1 or more).
    log_dir : path
        Folder for one ``NN-title.log`` per step (created).
    on_start, on_finish : callable, optional
        Called with the step's index when it starts, and with its :class:`StepOutcome`
        when it ends (from this thread, in the order the processes end).
    command : tuple of str
        What runs a neurofeat command (the step's arguments are appended).
    env : mapping, optional
        The processes' environment (default: :func:`single_thread_env`).

    Returns
    -------
    list of StepOutcome
        In the order the steps ended. Shorter than the plan when a step failed (the
        steps not started are left out); the failed one has ``ok == False``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be 1 or more, got {jobs}")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = single_thread_env() if env is None else dict(env)
    width = len(str(len(plan.steps)))
    running: dict[int, tuple[subprocess.Popen, float, Path]] = {}  # index -> process, start, log
    finished: set[int] = set()
    outcomes: list[StepOutcome] = []
    failed = False
    while True:
        if not failed:
            started = finished | running.keys()
            for index in plan.ready(finished, started)[:max(0, jobs - len(running))]:
                step = plan.steps[index]
                log = log_dir / f"{index + 1:0{width}d}-{_slug(step.title)}.log"
                with open(log, "w", encoding="utf-8") as stream:
                    stream.write(f"$ {step.command_line()}\n")
                    stream.flush()
                    process = subprocess.Popen([*command, *step.args], stdout=stream,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               env=env)
                running[index] = (process, time.perf_counter(), log)
                if on_start is not None:
                    on_start(index)
        if not running:
            break
        ended = _reap(running)
        if not ended:
            time.sleep(poll)
            continue
        for index, status, cpu in ended:
            _, began, log = running.pop(index)
            outcome = StepOutcome(index, status, time.perf_counter() - began, cpu, log)
            outcomes.append(outcome)
            finished.add(index)
            failed = failed or not outcome.ok
            if on_finish is not None:
                on_finish(outcome)
    return outcomes


def _reap(running: Mapping[int, tuple[subprocess.Popen, float, Path]]) -> list[tuple[int, int, float]]:
    """``(index, exit status, CPU seconds)`` of the processes that have ended."""
    ended = []
    for index, (process, _, _) in running.items():
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid == 0:
            continue
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        ended.append((index, process.returncode, usage.ru_utime + usage.ru_stime))
    return ended
