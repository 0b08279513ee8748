"""`--help` texts render as paragraphs: no hard-wrapped docstring line breaks mid-sentence."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from neurofeat.cli import app, reflow_help


def test_reflow_joins_wrapped_lines_and_keeps_commands():
    text = """First line.

    A long sentence wrapped
    over two lines. Multi-GPU:
    torchrun --nproc-per-node 4 -m neurofeat extract

    Examples:
      neurofeat sql "SELECT 1"
      neurofeat sql --file x
    """
    assert reflow_help(text) == (
        "First line.\n\nA long sentence wrapped over two lines. Multi-GPU:\n"
        "torchrun --nproc-per-node 4 -m neurofeat extract\n\n"
        "Examples:\n  neurofeat sql \"SELECT 1\"\n  neurofeat sql --file x")


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_help_is_reflowed():
    root = typer.main.get_command(app)
    for path, command in _commands(root):
        for paragraph in (command.help or "").split("\n\n"):
            for line in paragraph.split("\n")[1:]:
                assert line.startswith(("neurofeat ", "torchrun ", "python ", "  ")), \
                    (path, line)
    result = CliRunner().invoke(app, ["synth", "--help"], env={"COLUMNS": "200"})
    assert "manifest.csv, clinical.csv (canonical columns; unknown = empty), truth.parquet" \
        in result.output
