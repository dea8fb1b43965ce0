"""The documentation lives in the repository and every reference into it resolves.

Code, README files, matrices and the docs themselves cite ``docs/<page>.md#<anchor>``; a renamed
heading would silently strand those references, so this test rebuilds each page's anchors the
way GitHub does (lower case, punctuation dropped, spaces to hyphens, ``-1``, ``-2`` for
repeats) and checks every reference against them.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: Folders whose files are searched for references (generated results are not).
SOURCES = ("benchmark", "samplers", "targets", "tests", "docs")
SUFFIXES = {".py", ".md", ".toml"}
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
REFERENCE = re.compile(r"docs/([\w\-]+\.md)#([\w\-]+)")
RELATIVE = re.compile(r"\]\(([\w\-]+\.md)?#([\w\-]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def page_anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def source_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "results" / "README.md"]
    for folder in SOURCES:
        files += [path for path in (ROOT / folder).rglob("*")
                  if path.suffix in SUFFIXES and path.is_file()]
    return files


def test_every_reference_into_docs_resolves():
    anchors = {page.name: page_anchors(page) for page in DOCS.glob("*.md")}
    checked, broken = 0, []
    for path in source_files():
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            found = [(m.group(1), m.group(2)) for m in REFERENCE.finditer(line)]
            if path.parent == DOCS:  # links between pages, and within one
                found += [(m.group(1) or path.name, m.group(2)) for m in RELATIVE.finditer(line)]
            for page, anchor in found:
                checked += 1
                if anchor not in anchors.get(page, set()):
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {page}#{anchor}")
    assert checked > 100, f"only {checked} references found: the scan is not looking"
    assert not broken, "references to missing doc headings:\n" + "\n".join(broken)


def test_docs_cover_the_four_subjects_and_cite_nothing_outside_the_repository():
    pages = {page.name for page in DOCS.glob("*.md")}
    assert {"methods.md", "targets.md", "metrics.md", "harness.md"} <= pages
    outside = re.compile(r"\.\./shared|\b(METHODS|TARGETS|METRICS|HARNESS)\.md\b")
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in source_files()
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if outside.search(line) and path.name != Path(__file__).name]
    assert not offenders, "references to documents outside the repository: " + ", ".join(offenders)
