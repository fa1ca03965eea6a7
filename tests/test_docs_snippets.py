"""Every fenced ``python`` block in README.md and docs/**/*.md runs, on its own, within its time budget.

Each block is executed in a fresh namespace (it must define everything it uses) with the working
directory set to a temporary folder and warnings turned into errors (except in blocks that
show another library's code). A block may be preceded by
an HTML comment that changes how it is run:

* ``<!-- snippet: skip (reason and cost) -->``: shown but not run (the reason and the cost must be
  stated next to it in the page);
* ``<!-- snippet: requires torchmin -->``: run only when the named modules import (other
  libraries in side-by-side migration pages);
* ``<!-- snippet: budget 40 -->``: a time budget other than the default, in seconds.

The default budget is ``DEFAULT_BUDGET_S`` seconds of wall time per block on a 2-core machine.
"""

from __future__ import annotations

import importlib.util
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET_S = 20.0
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*$")
_MARK = re.compile(r"<!--\s*snippet:\s*(?P<kind>skip|requires|budget)\b(?P<arg>.*?)-->")


@dataclass
class Snippet:
    path: Path
    line: int
    code: str
    skip: str | None = None
    requires: list[str] = field(default_factory=list)
    budget: float = DEFAULT_BUDGET_S

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def collect(path: Path) -> list[Snippet]:
    """The ``python`` blocks of one Markdown file, with the markers written just above each."""
    lines = path.read_text(encoding="utf-8").split("\n")
    out: list[Snippet] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m["indent"], m["lang"], i
        i += 1
        body: list[str] = []
        while i < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[i]):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        if lang not in ("python", "py"):
            continue
        snippet = Snippet(path, start + 1, "\n".join(body) + "\n")
        j = start - 1
        while j >= 0 and (lines[j].strip() == "" or _MARK.search(lines[j])):
            mark = _MARK.search(lines[j])
            if mark:
                arg = mark["arg"].strip()
                if mark["kind"] == "skip":
                    snippet.skip = arg or "marked skip"
                elif mark["kind"] == "requires":
                    snippet.requires = arg.split()
                else:
                    snippet.budget = float(arg)
            j -= 1
        out.append(snippet)
    return out


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


SNIPPETS = [s for p in markdown_files() for s in collect(p)]


def test_collector_finds_blocks() -> None:
    assert len(SNIPPETS) >= 20, [s.id for s in SNIPPETS]
    assert any(s.path.name == "README.md" for s in SNIPPETS)
    skipped = [s for s in SNIPPETS if s.skip]
    for s in skipped:  # a block that is not run says why, and what running it costs
        assert re.search(r"\d", s.skip), f"{s.id}: state the cost of the block that is not run"


def test_collector_reads_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- snippet: skip (about 10 min) -->\n```python\nraise SystemExit\n```\n\n"
        "<!-- snippet: budget 3 -->\n<!-- snippet: requires json -->\n\n```python\nx = 1\n```\n"
        "```bash\nls\n```\n   ```python\n   y = 2\n   ```\n",
        encoding="utf-8",
    )
    a, b, c = collect(page)
    assert (a.skip, a.code) == ("(about 10 min)", "raise SystemExit\n")
    assert (b.skip, b.budget, b.requires, b.code) == (None, 3.0, ["json"], "x = 1\n")
    assert c.code == "y = 2\n" and c.budget == DEFAULT_BUDGET_S


def _params(snippets: list[Snippet]) -> list[object]:
    return [pytest.param(s, id=s.id, marks=pytest.mark.timeout(s.budget * 3)) for s in snippets]


@pytest.mark.docs
@pytest.mark.parametrize("snippet", _params(SNIPPETS))
def test_snippet_runs(snippet: Snippet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if snippet.skip:
        pytest.skip(f"not run: {snippet.skip}")
    missing = [m for m in snippet.requires if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {missing}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__snippet__"}
    start = time.perf_counter()
    with warnings.catch_warnings():
        # our blocks must run warning-free; another library's (a migration page's left column) may warn
        warnings.simplefilter("ignore" if snippet.requires else "error")
        exec(compile(snippet.code, snippet.id, "exec"), namespace)
    elapsed = time.perf_counter() - start
    assert elapsed < snippet.budget, f"{snippet.id} took {elapsed:.1f} s (budget {snippet.budget:g} s)"
