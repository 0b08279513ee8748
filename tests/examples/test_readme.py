"""The README runs word for word: its fenced blocks marked ```` ```bash runnable ````.

A shell block whose info string is ``bash runnable`` is executed; a plain ```` ```bash ````
block is documentation only (e.g. the GPU and torchrun commands, or steps that take
minutes). The runnable blocks run **in README order**, each with ``bash -euo pipefail``,
all in one fresh temporary working directory, so a later block sees the files and the
store (``--store S`` = ``./S``) an earlier one made. Nothing in the text is substituted.

The environment is the test's own, with two changes, so that a block behaves as in a
new user's shell after the install command:

- ``PATH`` starts with the folder of this interpreter (the virtual environment's
  ``neurofeat`` and ``python``);
- ``NEUROFEAT_STORE``, ``NEUROFEAT_MODELS``, ``NEUROFEAT_CONFIG`` and ``NEUROFEAT_CACHE``
  are removed (defaults: ``./neurofeat-store``, ``./models``, ``./neurofeat.toml``, no
  cache), and ``MPLBACKEND`` is set to ``Agg`` (no display).

A failing block fails the test with its README line, its text and its output. Mark a
block runnable only if it finishes in seconds on a tiny cohort: all of them together
should stay under about a minute.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = "runnable"
CLEARED = ("NEUROFEAT_STORE", "NEUROFEAT_MODELS", "NEUROFEAT_CONFIG", "NEUROFEAT_CACHE")
BLOCK_TIMEOUT_S = 300
_OPENING = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its info-string words, first line (1-based) and text."""

    info: tuple[str, ...]
    line: int
    text: str

    @property
    def runnable(self) -> bool:
        return self.info[:1] == ("bash",) and MARKER in self.info[1:]


def fenced_blocks(markdown: str) -> list[Block]:
    """Every fenced code block of a CommonMark document, in order.

    A block opens with 3+ backticks or tildes (indented at most 3 spaces) followed by an
    info string, and closes with a fence of the same character at least as long and
    nothing after it; an unclosed block runs to the end of the document.
    """
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        opening = _OPENING.match(lines[i])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            i += 1
            continue
        fence = opening["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j])
            j += 1
        blocks.append(Block(tuple(opening["info"].split()), i + 1, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def runnable_blocks(markdown: str) -> list[Block]:
    """The ```` ```bash runnable ```` blocks; ``runnable`` on another language is an error."""
    blocks = fenced_blocks(markdown)
    misplaced = [b for b in blocks if MARKER in b.info[1:] and not b.runnable]
    if misplaced:
        raise ValueError(f"line {misplaced[0].line}: only ```bash blocks can be marked "
                         f"'{MARKER}', not ```{' '.join(misplaced[0].info)}")
    return [b for b in blocks if b.runnable]


def block_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    return env


def run_blocks(blocks: list[Block], workdir: Path, *, source: str = "README.md",
               timeout: float = BLOCK_TIMEOUT_S) -> list[tuple[Block, float]]:
    """Run ``blocks`` in order in ``workdir``; fail with the block and its output."""
    env = block_env()
    timings = []
    for number, block in enumerate(blocks, start=1):
        script = workdir / f".readme-block-{number}.sh"
        script.write_text(block.text)
        start = time.perf_counter()
        try:
            done = subprocess.run(["bash", "-euo", "pipefail", str(script)], check=False,
                                  cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            output = error.stdout or ""
            if isinstance(output, bytes):
                output = output.decode(errors="replace")
            pytest.fail(f"{source} line {block.line}: block {number} ran past {timeout:.0f} s\n"
                        f"--- block ---\n{block.text}--- output ---\n{output[-6000:]}", pytrace=False)
        script.unlink()
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-6000:]
            pytest.fail(f"{source} line {block.line}: block {number} exited {done.returncode}\n"
                        f"--- block ---\n{block.text}--- output ---\n{output}", pytrace=False)
        timings.append((block, time.perf_counter() - start))
    return timings


# ------------------------------------------------------------------ the mechanism
SAMPLE = """\
# Sample

```bash runnable
mkdir -p S && echo one > S/a.txt
```

Not run: plain bash.

```bash
exit 3
```

~~~~bash runnable
# a later block sees the working directory of the earlier ones
test "$(cat S/a.txt)" = one
echo "${NEUROFEAT_STORE-unset}" > env.txt
~~~~

````markdown
```bash runnable
this is inside another fence: not a block
```
````
"""


def test_runnable_blocks_are_the_bash_runnable_ones_in_order():
    blocks = runnable_blocks(SAMPLE)
    assert [(b.line, b.info) for b in blocks] == [(3, ("bash", "runnable")),
                                                  (13, ("bash", "runnable"))]
    assert blocks[0].text == "mkdir -p S && echo one > S/a.txt\n"
    assert [b.info for b in fenced_blocks(SAMPLE)] == [
        ("bash", "runnable"), ("bash",), ("bash", "runnable"), ("markdown",)]


def test_runnable_on_another_language_is_refused():
    with pytest.raises(ValueError, match=r"line 1: only ```bash blocks .* not ```python runnable"):
        runnable_blocks("```python runnable\nprint(1)\n```\n")


def test_blocks_share_a_clean_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROFEAT_STORE", "/somewhere/else")
    run_blocks(runnable_blocks(SAMPLE), tmp_path)
    assert (tmp_path / "env.txt").read_text() == "unset\n"


def test_a_failing_block_is_reported_with_its_text_and_output(tmp_path):
    markdown = ("```bash runnable\necho fine\n```\n\n"
                "```bash runnable\necho before\nfalse\necho after\n```\n")
    with pytest.raises(pytest.fail.Exception) as info:
        run_blocks(runnable_blocks(markdown), tmp_path)
    message = str(info.value)
    assert "README.md line 5: block 2 exited 1" in message
    assert "echo before\nfalse\necho after" in message
    assert "before" in message.split("--- output ---")[1]
    assert "after" not in message.split("--- output ---")[1]  # -e: stops at the failure


def test_unset_variables_and_broken_pipes_fail(tmp_path):
    for text in ("echo $NO_SUCH_VARIABLE\n", "false | cat\n"):
        with pytest.raises(pytest.fail.Exception):
            run_blocks([Block(("bash", "runnable"), 1, text)], tmp_path)


# --------------------------------------------------------------------- the README
@pytest.mark.slow
def test_readme_runs_word_for_word(tmp_path):
    blocks = runnable_blocks(README.read_text())
    if not blocks:
        pytest.skip("README.md has no ```bash runnable block yet")
    timings = run_blocks(blocks, tmp_path)
    total = sum(seconds for _, seconds in timings)
    print("\n".join(f"README line {b.line}: {s:.1f} s" for b, s in timings))
    assert total < 180, f"the README's runnable blocks took {total:.0f} s; mark fewer (~60 s)"
