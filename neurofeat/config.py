"""User configuration: ``neurofeat.toml`` in the working directory (or ``$NEUROFEAT_CONFIG``).

Recognised tables: ``[tasks.<name>]`` (user tasks, same keys as the built-in
``neurofeat/data/tasks.toml``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["config_path", "load_config"]


def config_path() -> Path | None:
    """The active config file, or None."""
    env = os.environ.get("NEUROFEAT_CONFIG")
    if env:
        return Path(env)
    local = Path("neurofeat.toml")
    return local if local.exists() else None


def load_config(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Parse the config file (``{}`` when there is none).

    Raises
    ------
    ValueError
        If the file is not valid TOML (the message names the file).
    """
    resolved = Path(path) if path is not None else config_path()
    if resolved is None:
        return {}
    if not resolved.exists():
        raise ValueError(f"config file {resolved} does not exist")
    try:
        return tomllib.loads(resolved.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{resolved} is not valid TOML: {error}") from None
