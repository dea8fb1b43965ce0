"""One-page report of a store: ``python -m benchmark report STORE`` -> ``STORE/report.html``.

A single self-contained HTML file (standard library only; figures are linked, not embedded, so
the page stays small) holding, in order:

1. provenance: the matrices run into the store, the git commits, package and torch versions,
   devices, thread counts, workers and the time span of the stored cells;
2. the commands that remake everything on the page (``run`` per matrix, ``table``, ``plot``,
   ``report``);
3. every table of ``STORE/tables/*.md`` (written by ``table``), the Markdown pipe tables turned
   into HTML tables with their captions, the list of cells still missing first;
4. every figure of ``STORE/figures/*.png`` (written by ``plot``), with a link to its PDF.

Run ``table`` and ``plot`` first: the report shows what they wrote and says when a folder is
empty.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from benchmark.store import ResultsStore, atomic_write

REPORT_NAME = "report.html"
#: Tables shown first, in this order; the others follow alphabetically.
FIRST_TABLES = ("missing", "time_to_quality", "matched_cost")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
th { background: #f2f2f2; }
p.caption { font-size: 0.85em; color: #444; max-width: 70em; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
code, pre { background: #f6f6f6; } pre { padding: 0.5em; overflow-x: auto; }
"""


def _inline(text: str) -> str:
    """Escape a Markdown cell and keep its ``**bold**`` and `` `code` ``."""
    escaped = html.escape(text.strip())
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def markdown_to_html(text: str) -> str:
    """The tables' Markdown (caption paragraphs and pipe tables) as HTML."""
    out: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("|"):
            block = []
            while index < len(lines) and lines[index].startswith("|"):
                block.append(lines[index])
                index += 1
            rows = [[cell for cell in row.strip().strip("|").split("|")] for row in block]
            body = [row for row in rows[1:] if not all(set(c.strip()) <= set(":-") for c in row)]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
                       + "</tr></thead><tbody>")
            out.extend("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                       for row in body)
            out.append("</tbody></table>")
            continue
        if line.strip():
            out.append(f'<p class="caption">{_inline(line)}</p>')
        index += 1
    return "\n".join(out)


def provenance(rows: pd.DataFrame) -> dict[str, str]:
    """What produced the stored cells, each field the distinct values found."""
    def values(column: str) -> str:
        if column not in rows or rows.empty:
            return "–"
        found = sorted({str(v) for v in rows[column].dropna().unique()})
        if len(found) <= 6:
            return ", ".join(found)
        return ", ".join(found[:6]) + f" (+{len(found) - 6})"

    stamps = sorted(rows["timestamp"].dropna().astype(str)) if "timestamp" in rows else []
    return {"matrices": values("matrix"), "cells": str(rows["cell_id"].nunique()),
            "git commits": values("git_commit"), "package": values("package_version"),
            "torch": values("torch_version"), "devices": values("device"),
            "threads": values("num_threads"),
            "workers": values("worker") if rows.empty or rows["worker"].nunique() <= 6
            else f"{rows['worker'].nunique()} worker processes",
            "cells finished": f"{stamps[0]} to {stamps[-1]}" if stamps else "–"}


def _table_order(path: Path) -> tuple:
    name = path.stem
    return (FIRST_TABLES.index(name) if name in FIRST_TABLES else len(FIRST_TABLES), name)


def write_report(store_dir: str | Path) -> Path:
    """Write ``STORE/report.html`` (module docstring) and return its path."""
    root = Path(store_dir)
    store = ResultsStore(root)
    rows, _ = store.load_current()
    plan = store.load_plan()
    matrices = sorted(set(plan["matrix"]) if not plan.empty else set(rows.get("matrix", [])))
    title = f"sampler-bench report: {root.name}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    parts.append("<h2 id='provenance'>Provenance</h2><table><tbody>")
    parts.extend(f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>"
                 for key, value in provenance(rows).items())
    parts.append("</tbody></table>")
    commands = [f"python -m benchmark run {m} --out {root}" for m in matrices]
    commands += [f"python -m benchmark table {root}", f"python -m benchmark plot {root}",
                 f"python -m benchmark report {root}"]
    parts.append("<h2 id='commands'>Commands</h2><pre>"
                 + html.escape("\n".join(commands)) + "</pre>")
    tables = sorted((root / "tables").glob("*.md"), key=_table_order)
    parts.append("<h2 id='tables'>Tables</h2>")
    if not tables:
        parts.append(f"<p>No tables yet: run <code>python -m benchmark table {root}</code>.</p>")
    for path in tables:
        parts.append(f"<h3 id='table-{path.stem}'>{html.escape(path.stem)} "
                     f"(<a href='tables/{path.name}'>md</a>"
                     + (f", <a href='tables/{path.stem}.tex'>tex</a>"
                        if (path.with_suffix('.tex')).exists() else "") + ")</h3>")
        parts.append(markdown_to_html(path.read_text(encoding="utf-8")))
    figures = sorted((root / "figures").glob("*.png"))
    parts.append("<h2 id='figures'>Figures</h2>")
    if not figures:
        parts.append(f"<p>No figures yet: run <code>python -m benchmark plot {root}</code>.</p>")
    for path in figures:
        pdf = path.with_suffix(".pdf")
        link = f" (<a href='figures/{pdf.name}'>pdf</a>)" if pdf.exists() else ""
        parts.append(f"<figure id='figure-{path.stem}'><img src='figures/{path.name}' "
                     f"alt='{html.escape(path.stem)}'><figcaption>{html.escape(path.stem)}"
                     f"{link}</figcaption></figure>")
    parts.append("</body></html>\n")
    out = root / REPORT_NAME
    atomic_write(out, lambda stream: stream.write("\n".join(parts)))
    return out


__all__ = ["REPORT_NAME", "markdown_to_html", "provenance", "write_report"]
