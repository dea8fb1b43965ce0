"""The LaTeX tables compile: every committed ``results/**/tables/*.tex`` (and a table whose labels
hold every character we escape, and one without rows) is a complete float for pdflatex with
booktabs and graphicx; and table files are written atomically.

Two kinds of check:

* structural, always: ASCII only (pdflatex has no setup for other characters), one ``table``
  float with exactly one ``\\caption`` and one ``\\label``, the tabular inside ``\\resizebox``
  (shrunk to the text width), booktabs rules, balanced braces;
* compiled, when ``pdflatex`` (with ``booktabs.sty`` and ``graphicx.sty``) is installed: all
  files ``\\input`` into one minimal ``article`` (one pdflatex run, a few seconds), no error and
  no overfull box; on failure each file is compiled alone to name the broken ones. Without
  pdflatex the test is skipped, except under ``CI=true``, where it fails: CI must compile them
  (``.ci/run`` installs Debian's ``texlive-latex-base`` and ``texlive-latex-recommended``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from benchmark.report.formatting import latex_escape, render_latex
from benchmark.store import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[2]
PREAMBLE = r"\documentclass{article}\usepackage{booktabs}\usepackage{graphicx}"
PACKAGES = ("booktabs.sty", "graphicx.sty")
#: Every character latex_escape must make safe, in a label, a header and a caption.
NASTY = "a_b%c&d#e$f{g}h~i^j\\k †±×−–—<>| é σ ≤ 漢 @1"


def committed_tables() -> list[Path]:
    """``results/**/tables/*.tex`` as git tracks them (every one on disk without git)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", ":(glob)results/**/tables/*.tex"], cwd=ROOT,
            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
        return sorted(ROOT / name for name in listed if name)
    except (OSError, subprocess.SubprocessError):
        return sorted(ROOT.glob("results/**/tables/*.tex"))


TABLES = committed_tables()


def empty_table() -> str:
    return render_latex(pd.DataFrame(index=pd.Index([], name="sampler@budget")), "No target.",
                        "tab:empty")


def nasty_table() -> str:
    table = pd.DataFrame({f"{NASTY} (column)": ["$1 \\pm 0.1$", ""]},
                         index=pd.MultiIndex.from_tuples([(NASTY, "x"), ("y", NASTY)],
                                                         names=[NASTY, "sampler@budget"]))
    return render_latex(table, latex_escape(NASTY), f"tab:{NASTY}")


def brace_depths(text: str) -> list[int]:
    """Brace depth after each unescaped brace (``\\{``, ``\\}``, ``\\\\`` and comments skipped)."""
    depths, depth, index = [], 0, 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "%":
            newline = text.find("\n", index)
            index = len(text) if newline < 0 else newline
            continue
        if char in "{}":
            depth += 1 if char == "{" else -1
            depths.append(depth)
        index += 1
    return depths


def structural_problems(text: str) -> list[str]:
    problems = []
    if not text.isascii():
        problems.append(f"non-ASCII characters {sorted({c for c in text if not c.isascii()})}")
    stripped = text.strip()
    if not (stripped.startswith(r"\begin{table}") and stripped.endswith(r"\end{table}")):
        problems.append("not one complete table float")
    for command, count in ((r"\begin{table}", 1), (r"\caption{", 1), (r"\label{", 1),
                           (r"\resizebox{", 1), (r"\begin{tabular}", 1), (r"\toprule", 1),
                           (r"\midrule", 1), (r"\bottomrule", 1)):
        if text.count(command) != count:
            problems.append(f"{command} occurs {text.count(command)} times, not {count}")
    if text.find(r"\resizebox{") > text.find(r"\begin{tabular}"):
        problems.append(r"the tabular is not inside \resizebox")
    depths = brace_depths(text)
    if depths and (min(depths) < 0 or depths[-1] != 0):
        problems.append("unbalanced braces")
    return problems


def test_there_are_committed_tables():
    assert TABLES, "no results/**/tables/*.tex found"


@pytest.mark.parametrize("path", TABLES, ids=[str(p.relative_to(ROOT)) for p in TABLES])
def test_committed_table_is_one_captioned_float_that_fits(path):
    assert structural_problems(path.read_text(encoding="utf-8")) == []


def test_labels_and_captions_are_escaped_for_pdflatex():
    text = nasty_table()
    assert structural_problems(text) == []
    assert r"\label{tab:a_b-c-d-e-f-g-h-i-j-k" in text  # unsafe key characters become "-"
    assert r"\caption{a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}" in text


def test_a_table_without_rows_is_still_one_captioned_float():
    text = empty_table()
    assert structural_problems(text) == [] and "(no applicable target)" in text


def test_tables_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "ksd.tex"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["ksd.tex"]

    def killed(source, destination):
        raise KeyboardInterrupt  # e.g. the run is stopped between writing and renaming

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"half")
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["ksd.tex"]


def test_brace_check_sees_escapes_and_comments():
    assert "unbalanced braces" in structural_problems(r"\caption{a\}")
    assert brace_depths(r"{a\{b}% }") == [1, 0]
    assert brace_depths("}{") == [-1, 0]


def _latex_toolchain() -> str | None:
    """Why the compile check cannot run here, or None when it can."""
    if shutil.which("pdflatex") is None:
        return "pdflatex is not installed (Debian: texlive-latex-base texlive-latex-recommended)"
    if shutil.which("kpsewhich") is not None:
        for package in PACKAGES:
            found = subprocess.run(["kpsewhich", package], capture_output=True, text=True,
                                   timeout=60)
            if not found.stdout.strip():
                return f"{package} is not installed (Debian: texlive-latex-recommended)"
    return None


def _compile(directory: Path, names: list[str]) -> str | None:
    """The error (or overfull box) of one pdflatex run inputting ``names``, or None."""
    body = "".join(rf"\input{{{name}}}\clearpage" + "\n" for name in names)
    document = f"{PREAMBLE}\n\\begin{{document}}\n{body}\\end{{document}}\n"
    (directory / "doc.tex").write_text(document)
    try:
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                              "-no-shell-escape", "doc.tex"], cwd=directory,
                             capture_output=True, text=True, errors="replace", timeout=120)
    except subprocess.TimeoutExpired:
        return "pdflatex timed out"
    log = (directory / "doc.log").read_text(errors="replace") if (
        directory / "doc.log").exists() else run.stdout
    errors = [line for line in log.splitlines()
              if line.startswith("!") or re.match(r"Overfull \\[hv]box", line)]
    if run.returncode != 0 or errors:
        return "; ".join(errors[:5]) or f"pdflatex exited with {run.returncode}"
    return None


def test_tables_compile_with_pdflatex(tmp_path):
    missing = _latex_toolchain()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must compile the LaTeX tables, but {missing}")
        pytest.skip(missing)
    sources = {f"table{index:03d}": path.read_text(encoding="utf-8")
               for index, path in enumerate(TABLES)}
    names = {name: str(path.relative_to(ROOT)) for name, path in zip(sources, TABLES, strict=True)}
    sources["nasty"], names["nasty"] = nasty_table(), "render_latex(labels with every escape)"
    sources["empty"], names["empty"] = empty_table(), "render_latex(a table without rows)"
    for name, text in sources.items():
        (tmp_path / f"{name}.tex").write_text(text, encoding="utf-8")
    if _compile(tmp_path, list(sources)) is None:
        return
    failures = {names[name]: _compile(tmp_path, [name]) for name in sources}
    failures = {name: error for name, error in failures.items() if error is not None}
    assert failures, "all files compile alone but not together"
    pytest.fail("tables that do not compile with pdflatex:\n" + "\n".join(
        f"  {name}: {error}" for name, error in failures.items()))
