"""The report model (frozen dataclasses) and its HTML renderer.

:func:`neurofeat.runs.report.build_report` reads the store into a :class:`Report`;
:func:`render_html` turns it into one self-contained HTML page: CSS inline, figures as
``data:`` PNG images, no script, no font, no link to anything outside the file. A
Content-Security-Policy in the page forbids loading anything but ``data:`` images, so
even a browser that followed a stray reference would not reach the network. Every text
from the model is escaped with :func:`html.escape`. The renderer is pure: model in,
string out.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

__all__ = ["Paragraph", "Table", "Image", "Section", "Absent", "Report", "render_html",
           "CONTENT_SECURITY_POLICY"]

#: Nothing may load but ``data:`` images and the inline style sheet.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of text; ``kind`` 'note' renders small, 'warning' highlighted."""

    text: str
    kind: str = "text"


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells.

    Attributes
    ----------
    caption : str
    columns : tuple of str
    rows : tuple of tuple of str
        One tuple per row, as many cells as ``columns``.
    notes : tuple of str
        Lines printed under the table (estimands, methods, warnings).
    """

    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for index, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"table '{self.caption}': row {index} has {len(row)} cells "
                                 f"for {len(self.columns)} columns")


@dataclass(frozen=True)
class Image:
    """A PNG figure, inlined as a ``data:`` URI."""

    caption: str
    png: bytes = field(repr=False)
    alt: str = ""


@dataclass(frozen=True)
class Section:
    """One section of the report: a title and a sequence of blocks."""

    key: str
    title: str
    blocks: tuple[Paragraph | Table | Image, ...]


@dataclass(frozen=True)
class Absent:
    """A section the store has no data for: why, and which command adds it."""

    key: str
    title: str
    reason: str
    command: str


@dataclass(frozen=True)
class Report:
    """Everything the HTML page shows.

    Attributes
    ----------
    title : str
    store_name : str
        The store folder's name (not its full path).
    generated_at : str
        ISO time stamp of the report.
    neurofeat_version : str
        Version that built the report (each run's own version is in the provenance).
    sections : tuple of Section
    absent : tuple of Absent
    """

    title: str
    store_name: str
    generated_at: str
    neurofeat_version: str
    sections: tuple[Section, ...]
    absent: tuple[Absent, ...] = ()

    @property
    def section_keys(self) -> tuple[str, ...]:
        """Keys of the sections present."""
        return tuple(s.key for s in self.sections)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;
color:#1d2330;background:#fafafa;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:1.7em;margin:0 0 4px}h2{font-size:1.3em;margin:36px 0 8px;padding-top:8px;
border-top:2px solid #d9dde5}
.meta{color:#5b6475;font-size:.9em;margin:0 0 16px}
nav ol{columns:2;font-size:.92em;padding-left:20px}
nav a{color:#1f4fa8;text-decoration:none}
table{border-collapse:collapse;margin:8px 0 4px;font-size:.84em;background:#fff}
caption{text-align:left;font-weight:600;padding:4px 0;color:#2a3142}
th,td{border:1px solid #d9dde5;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}
td.hash{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;word-break:break-all}
.tablewrap{overflow-x:auto}
p.note,ul.notes{font-size:.82em;color:#4b5366;margin:2px 0 10px}
ul.notes{padding-left:18px}
p.warning{background:#fff4d6;border-left:4px solid #e0a800;padding:6px 10px}
figure{margin:12px 0 18px}figure img{max-width:100%;height:auto;border:1px solid #e3e6ec;
background:#fff}figcaption{font-size:.85em;color:#4b5366}
.absent{background:#f1f3f7;border-left:4px solid #9aa3b5;padding:6px 10px;font-size:.9em}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;background:#eef1f6;
padding:0 3px}
"""


#: A cell that starts with a number (a count, an estimate, an interval, "26/60 (43 %)").
_NUMERIC = re.compile(r"^[−\-+<>= ]*\d")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cell_class(text: str, column: str) -> str:
    if "sha256" in column or column in ("checkpoint", "preprocessing"):
        return ' class="hash"'
    return ' class="num"' if _NUMERIC.match(text) else ""


def _table(table: Table) -> str:
    head = "".join(f"<th scope=\"col\">{_e(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td{_cell_class(cell, col)}>{_e(cell)}</td>"
                         for cell, col in zip(row, table.columns)) + "</tr>"
        for row in table.rows)
    notes = ("<ul class=\"notes\">" + "".join(f"<li>{_e(n)}</li>" for n in table.notes)
             + "</ul>") if table.notes else ""
    return (f"<div class=\"tablewrap\"><table><caption>{_e(table.caption)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{notes}")


def _image(image: Image) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    alt = image.alt or image.caption
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{_e(alt)}\">"
            f"<figcaption>{_e(image.caption)}</figcaption></figure>")


def _block(block: Paragraph | Table | Image) -> str:
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        return _image(block)
    kind = block.kind if block.kind in ("note", "warning") else "text"
    return f"<p class=\"{kind}\">{_e(block.text)}</p>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page.

    Parameters
    ----------
    report : Report

    Returns
    -------
    str
        HTML5 with inline CSS and ``data:`` PNG images only; no script, no external URL.
    """
    toc = "".join(f"<li><a href=\"#{_e(s.key)}\">{_e(s.title)}</a></li>"
                  for s in report.sections)
    parts = [
        "<!DOCTYPE html>",
        "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_e(CONTENT_SECURITY_POLICY)}\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(report.title)}</h1>",
        f"<p class=\"meta\">store <code>{_e(report.store_name)}</code> · generated "
        f"{_e(report.generated_at)} by neurofeat {_e(report.neurofeat_version)}</p>",
        f"<nav><ol>{toc}</ol></nav>",
    ]
    if report.absent:
        parts.append("<section id=\"absent\"><h2>Not in this store</h2>")
        for item in report.absent:
            parts.append(f"<p class=\"absent\"><strong>{_e(item.title)}</strong>: "
                         f"{_e(item.reason)}; <code>{_e(item.command)}</code> adds it.</p>")
        parts.append("</section>")
    for section in report.sections:
        parts.append(f"<section id=\"{_e(section.key)}\"><h2>{_e(section.title)}</h2>")
        parts.extend(_block(block) for block in section.blocks)
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts)
