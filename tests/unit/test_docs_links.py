"""Links into the docs resolve: the relative links of README.md and docs/, and the design pointers
that production module docstrings end with (issue 15 moved the design there; a pointer to a
heading that was renamed since would send the reader nowhere)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.unit.test_code_shape import ROOT, production_files

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCSTRING_POINTER = re.compile(r"((?:docs/[\w-]+\.md|README\.md))(?:#([\w-]+))?")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped (hyphens and underscores
    kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor, a repeated heading numbered as GitHub numbers it; fenced code skipped."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        heading = None if fenced else re.match(r"^#{1,6}\s+(.*)$", line)
        if heading:
            name = anchor(heading.group(1))
            found.add(f"{name}-{seen[name]}" if name in seen else name)
            seen[name] = seen.get(name, 0) + 1
    return found


def broken(target: Path, fragment: str) -> str | None:
    if not target.exists():
        return "no such file"
    if fragment and target.suffix == ".md" and fragment not in anchors(target.read_text()):
        return f"no heading #{fragment}"
    return None


def test_every_relative_link_of_the_docs_resolves():
    problems = {}
    for page in DOCS:
        for link in MARKDOWN_LINK.findall(page.read_text()):
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, fragment = link.partition("#")
            problem = broken((page.parent / path) if path else page, fragment)
            if problem:
                problems[f"{page.relative_to(ROOT)}: {link}"] = problem
    assert problems == {}


def test_every_docs_pointer_of_a_module_docstring_resolves():
    problems = {}
    pointers = 0
    for path in production_files():
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        for page, fragment in DOCSTRING_POINTER.findall(docstring):
            pointers += 1
            problem = broken(ROOT / page, fragment)
            if problem:
                problems[f"{path.relative_to(ROOT)}: {page}#{fragment}"] = problem
    assert pointers > 20, pointers  # the modules whose design moved to docs/ point there
    assert problems == {}


def test_anchors_follow_githubs_rules():
    markdown = "\n".join(
        [
            "# Detectors: what each listens to",
            "### 2. Cost per recovery",
            "### provision_warm_pool and provision_standby_group",
            "## Route 53 or ARC routing controls",
            "```",
            "# not a heading",
            "```",
            "## Limits",
            "## Limits",
        ]
    )
    assert anchors(markdown) == {
        "detectors-what-each-listens-to",
        "2-cost-per-recovery",
        "provision_warm_pool-and-provision_standby_group",
        "route-53-or-arc-routing-controls",
        "limits",
        "limits-1",
    }


def test_a_pointer_to_a_missing_heading_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Region probe\n")
    assert broken(page, "region-probe") is None
    assert broken(page, "") is None
    assert broken(page, "health-sweep") == "no heading #health-sweep"
    assert broken(tmp_path / "gone.md", "") == "no such file"
