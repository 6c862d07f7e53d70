"""The documentation: every relative link in README.md, the other top-level and recipe Markdown files and docs/
points at a file (and heading) that exists, README.md stays a front page (≤ 15,000 characters, its test command
is what CI runs), and ``mkdocs build --strict`` builds the site offline, CLI reference included."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

@functools.cache
def _hook():
    """docs/hooks/docs_site.py, the MkDocs hook (not a package: loaded from its path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_site", ROOT / "docs" / "hooks" / "docs_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


markdown_links = _hook().markdown_links


@functools.cache
def _cli_page() -> str:
    return _hook().cli_reference()


def documents() -> list[Path]:
    return sorted([*ROOT.glob("*.md"), *ROOT.glob("egs/*/*.md"), *(ROOT / "docs").rglob("*.md")])


def github_slug(heading: str) -> str:
    """The anchor GitHub (and MkDocs' toc, for these headings) gives a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    generated = path == ROOT / "docs" / "reference" / "cli.md"   # its site page is written by the hook
    text = _cli_page() if generated else path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return {github_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def own_anchor_links(text: str) -> list[str]:
    """``[x](#heading)`` targets: links to a heading of the same document (markdown_links leaves them out)."""
    hook = _hook()
    text = re.sub(r"`[^`\n]*`", "", hook.FENCE.sub("", text))
    return [t for _, t, _ in hook.LINK.findall(text) if t.startswith("#")]


def broken_links(paths: list[Path]) -> list[str]:
    broken = []
    for doc in paths:
        text = doc.read_text(encoding="utf-8")
        for target in markdown_links(text) + own_anchor_links(text):
            path, _, anchor = target.partition("#")
            full = (doc.parent / path).resolve() if path else doc   # "#part": a heading of this document
            where = f"{doc.relative_to(ROOT)}: {target}"
            if not full.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and full.suffix == ".md" and anchor not in anchors(full):
                broken.append(f"{where} (no such heading)")
    return broken


def test_every_relative_link_points_somewhere():
    assert len(documents()) > 20
    assert broken_links(documents()) == []


def test_the_link_check_finds_a_broken_link(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n[ok](b.md#part) [gone](c.md) [bad anchor](b.md#nowhere) "
                                   "[here](#top) [not here](#elsewhere) "
                                   "[web](https://example.com) `[code](x.md)`\n\n```\n[block](y.md)\n```\n")
    (tmp_path / "b.md").write_text("# B\n\n## Part\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert broken_links([tmp_path / "a.md"]) == ["a.md: c.md (no such file)", "a.md: b.md#nowhere (no such heading)",
                                                     "a.md: #elsewhere (no such heading)"]
    finally:
        ROOT = saved


def test_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme) <= 15_000
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    command = ci.split("&&", 1)[1].strip()
    assert command == ".venv/bin/python -m pytest -q -n 2 --dist loadfile --durations=10"
    assert f"tools/install.sh --test && {command}" in readme
    results = readme[readme.index("## Results"):readme.index("## Documentation")]
    rows = [ln for ln in results.splitlines() if ln.startswith("| ") and not ln.startswith("| task")]
    assert 0 < len(rows) <= 10 and all("](RESULTS.md#" in ln for ln in rows)


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None
                    and subprocess.run([sys.executable, "-c", "import mkdocs"]).returncode != 0,
                    reason="mkdocs not installed (tools/install.sh --test installs it)")
def test_the_site_builds_strict_and_offline(tmp_path):
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path),
           "NO_PROXY": "*", "no_proxy": "*", "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "speechalign.cli.build_parser()" in cli
    from speechalign.cli import build_parser

    parser = build_parser()
    for _, names in parser.stages:
        for name in names:
            assert f"speechalign {name}</code>" in cli, name
    assert "speechalign compare yubao</code>" in cli and "speechalign prepare goo-gi</code>" in cli
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "load_config" in api and "seqsim" in api


def unbalanced_fences(text: str) -> list[int]:
    """Lines of fences (``` or ~~~) that open a block never closed, or open one with nothing in it."""
    opened, bad = None, []
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        fence = line.lstrip()[:3]
        if fence in ("```", "~~~") and (opened is None or fence == lines[opened - 1].lstrip()[:3]):
            if opened is None:
                opened = n
            else:
                if n == opened + 1 or all(not x.strip() for x in lines[opened : n - 1]):
                    bad.append(opened)
                opened = None
    return bad + ([opened] if opened is not None else [])


def test_every_code_fence_is_closed_and_filled(tmp_path):
    """A fence opened and never filled renders as a stray ``` (the home page once lost its pipeline picture so)."""
    problems = [f"{p.relative_to(ROOT)}:{n}" for p in documents() for n in unbalanced_fences(p.read_text("utf-8"))]
    assert not problems, f"unclosed or empty code fences: {problems}"
    assert unbalanced_fences("a\n```\n\nb\n") == [2]
    assert unbalanced_fences("```\nx\n```\n```\n\n```\n") == [4]
    assert unbalanced_fences("```bash\nx\n```\n") == []
