"""Task registry: what label a probe predicts, of what kind, in which cohort.

Built-in tasks live in the package data file ``neurofeat/data/tasks.toml``; a user's
``neurofeat.toml`` adds or overrides ``[tasks.<name>]`` tables.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from neurofeat import suggest
from neurofeat.config import load_config

__all__ = ["Task", "get_task", "list_tasks", "closest_match"]

TaskKind = Literal["binary", "continuous", "survival"]
_KINDS = ("binary", "continuous", "survival")


@dataclass(frozen=True)
class Task:
    """One prediction task.

    Attributes
    ----------
    name : str
        Registry name (``idh1``, ``ki67``, ``os``).
    label : str
        Column of the ``clinical`` view holding the label.
    kind : {'binary', 'continuous', 'survival'}
    threshold : float or None
        Continuous tasks are also scored as binary: positive when value >= threshold.
    cohort : str
        SQL WHERE clause over the ``clinical`` view selecting eligible patients ('' = all).
    description : str
    time_column, event_column : str or None
        Survival tasks only.
    """

    name: str
    label: str
    kind: TaskKind
    threshold: float | None = None
    cohort: str = ""
    description: str = ""
    time_column: str | None = None
    event_column: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"task '{self.name}': kind must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "continuous" and self.threshold is None:
            raise ValueError(f"task '{self.name}': a continuous task needs a 'threshold' for its binary scoring")
        if self.kind == "survival" and not (self.time_column and self.event_column):
            raise ValueError(f"task '{self.name}': a survival task needs 'time_column' and 'event_column'")

    @property
    def label_columns(self) -> tuple[str, ...]:
        if self.kind == "survival":
            return (self.time_column, self.event_column)  # type: ignore[return-value]
        return (self.label,)

    @classmethod
    def from_dict(cls, name: str, spec: dict[str, Any]) -> "Task":
        allowed = {"label", "kind", "threshold", "cohort", "description", "time_column", "event_column"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(f"task '{name}': unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        if "kind" not in spec:
            raise ValueError(f"task '{name}': 'kind' is required (binary, continuous or survival)")
        threshold = spec.get("threshold")
        return cls(
            name=name,
            label=str(spec.get("label", name)),
            kind=spec["kind"],
            threshold=float(threshold) if threshold is not None else None,
            cohort=str(spec.get("cohort", "")),
            description=str(spec.get("description", "")),
            time_column=spec.get("time_column"),
            event_column=spec.get("event_column"),
        )


def _builtin_specs() -> dict[str, dict[str, Any]]:
    text = resources.files("neurofeat").joinpath("data/tasks.toml").read_text()
    return tomllib.loads(text)["tasks"]


def list_tasks(config: dict[str, Any] | None = None) -> list[Task]:
    """Built-in tasks plus the user's (``neurofeat.toml``), user ones overriding."""
    specs = dict(_builtin_specs())
    user = (config if config is not None else load_config()).get("tasks", {})
    specs.update(user)
    return [Task.from_dict(name, spec) for name, spec in specs.items()]


def closest_match(name: str, choices: list[str]) -> str | None:
    """The most similar of ``choices`` to ``name``, if any is close
    (:func:`neurofeat.suggest.closest_match`, kept here for existing callers)."""
    return suggest.closest_match(name, choices)


def get_task(name: "str | Task", config: dict[str, Any] | None = None) -> Task:
    """Look up a task by name.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known tasks and the closest match.
    """
    if isinstance(name, Task):
        return name
    tasks = {task.name: task for task in list_tasks(config)}
    if name in tasks:
        return tasks[name]
    guess = closest_match(name, list(tasks))
    hint = f" Did you mean '{guess}'?" if guess else ""
    raise ValueError(f"unknown task '{name}'.{hint} Known tasks: {', '.join(sorted(tasks))}.")
