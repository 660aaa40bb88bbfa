"""The README and docs/ hold together: every relative link in README.md and docs/*.md points at a
file that exists and, when it names one, at a heading that exists there (GitHub's anchors); the
README stays a front door and keeps the things other parts of the project rely on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The text without code blocks and inline code (links in them are not links)."""
    return CODE.sub("", FENCE.sub("", text))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to dashes."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = anchor(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(_prose(path.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto:


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        name, _, fragment = target.partition("#")
        file = (page.parent / name).resolve() if name else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_anchor_is_githubs() -> None:
    assert anchor("Phases that work in steps (agents)") == "phases-that-work-in-steps-agents"
    assert anchor("Capabilities: `experimental.phasewise`") == "capabilities-experimentalphasewise"
    assert anchor("Workspace-scale phases: context, edit formats, one change") == \
        "workspace-scale-phases-context-edit-formats-one-change"


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 170
    head = readme.split("```sh", 1)[1].split("```", 1)[0]  # the commands come first
    assert readme.lstrip().startswith("# Phasewise\n\n```sh")
    assert "phasewise demo" in head and "bash .ci/run" in head
    # The package is not on PyPI yet: never offer a command that fails.
    assert not re.search(r"pip(x)? install phasewise\b|uv tool install phasewise\b", readme)
    for page in ("docs/install.md", "docs/local-models.md", "docs/contract.md", "bench/RESULTS.md"):
        assert f"({page}" in readme or f"({page.removeprefix('docs/')}" in readme, page


def test_the_readme_says_why_each_runtime_dependency_is_there() -> None:
    import tomllib

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Runtime dependencies, and why", 1)[1]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    names = [re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower() for d in deps]
    missing = [n for n in names if not re.search(rf"\b{re.escape(n)}\b", table.lower())]
    assert not missing, f"runtime dependencies without a why in the README: {missing}"


def test_measured_figures_live_only_in_bench_results() -> None:
    """A figure of bench/RESULTS.md's latest run copied into the README or docs/ would drift."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for figure in ("28.40 ms", "118.5 → 120.8 MiB", "10,556 cases", "51.0 % lower", "3.9 ms p50"):
            assert figure not in text, f"{page.relative_to(ROOT)} repeats {figure!r}: link bench/RESULTS.md"
