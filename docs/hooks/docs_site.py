"""MkDocs hooks (``hooks:`` in mkdocs.yml): the generated CLI reference, and the repository files the pages link to.

- ``reference/cli.md`` is replaced at build time by a page written from ``speechalign.cli.build_parser()``:
  every command, its usage, options and example, so the reference cannot drift from the code (the file in
  ``docs/`` is a stub that says so).
- The pages link to files outside ``docs/`` as the repository has them (``../RESULTS.md``,
  ``../egs/goo-gi/README.md``), which is right on GitHub and in an editor. For the site, every such target (and,
  for Markdown, what it links to in turn) is added under ``repo/`` with its repository layout, and the links are
  rewritten to point there; links from those files back into ``docs/`` go to the real pages. A target that does
  not exist stays as written, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import argparse
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
MIRROR = "repo"
GENERATED = ("reference/cli.md",)
# [text](target) and [text](target "title"); images too. Code spans and fenced blocks are left alone.
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def markdown_links(text: str) -> list[str]:
    """Relative link targets of a Markdown text (no scheme, no pure #anchor), outside code blocks and spans."""
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))
    return [t for _, t, _ in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", t)]


def _in_repo(doc_path: str, target: str) -> str | None:
    """Repository path (posix, from the root) of a link target written in ``doc_path``; None outside it."""
    path = target.split("#")[0]
    if not path:
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(doc_path), path))
    return None if joined.startswith("..") else joined


def _mirror_targets(docs_dir: Path) -> set[str]:
    """Repository files outside docs/ that pages link to, followed through the Markdown ones."""
    todo = [f"docs/{p.relative_to(docs_dir).as_posix()}" for p in docs_dir.rglob("*.md")]
    seen: set[str] = set()
    while todo:
        doc = todo.pop()
        source = docs_dir / doc.removeprefix("docs/") if doc.startswith("docs/") else ROOT / doc
        for target in markdown_links(source.read_text(encoding="utf-8")):
            path = _in_repo(doc, target)
            if path is None or path.startswith("docs/") or path in seen:
                continue
            full = ROOT / path
            if full.is_dir() and (full / "README.md").is_file():
                path, full = f"{path.rstrip('/')}/README.md", full / "README.md"
            if full.is_file() and path not in seen:
                seen.add(path)
                if path.endswith(".md"):
                    todo.append(path)
    return seen


def _rewrite(markdown: str, repo_path: str, site_path: str) -> str:
    """Point the links of a page (at ``repo_path`` in the repository, ``site_path`` in the site) at site pages."""

    def fix(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
            return m.group(0)
        path = _in_repo(repo_path, target)
        if path is None:
            return m.group(0)
        anchor = target[len(target.split("#")[0]):]
        full = ROOT / path
        if full.is_dir() and (full / "README.md").is_file():
            path = f"{path.rstrip('/')}/README.md"
        elif not full.exists():
            return m.group(0)
        site = path.removeprefix("docs/") if path.startswith("docs/") else f"{MIRROR}/{path}"
        rel = posixpath.relpath(site, posixpath.dirname(site_path) or ".")
        return f"{m.group(1)}{rel}{anchor}{m.group(3)}"

    parts, last = [], 0
    for block in FENCE.finditer(markdown):   # leave code blocks as they are
        parts += [LINK.sub(fix, markdown[last:block.start()]), block.group(0)]
        last = block.end()
    return "".join(parts + [LINK.sub(fix, markdown[last:])])


# Pages other work adds to docs/ that belong in the nav, after the page named: listed here when they appear.
OPTIONAL_NAV = {"runs.md": ("Runs", "scaling.md")}


def on_config(config):
    """Put an optional page into the nav (after its neighbour) when the file exists and the nav lacks it."""
    nav = config["nav"] or []

    def pages(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from pages(value) if isinstance(value, list) else [value]

    present = set(pages(nav))
    for page, (title, after) in OPTIONAL_NAV.items():
        if page in present or not (Path(config["docs_dir"]) / page).is_file():
            continue
        at = next((i + 1 for i, item in enumerate(nav) if isinstance(item, dict) and after in item.values()), len(nav))
        nav.insert(at, {title: page})
    return config


def on_files(files, config):
    docs_dir = Path(config["docs_dir"])
    for path in sorted(_mirror_targets(docs_dir)):
        if path.endswith(".md"):
            files.append(File.generated(config, f"{MIRROR}/{path}", content=(ROOT / path).read_text(encoding="utf-8")))
        else:
            files.append(File.generated(config, f"{MIRROR}/{path}", abs_src_path=str(ROOT / path)))
    return files


def on_page_markdown(markdown, page, config, files):
    src = page.file.src_uri
    if src in GENERATED:   # the file in docs/ is a stub for readers of the repository
        return cli_reference()
    repo_path = src.removeprefix(f"{MIRROR}/") if src.startswith(f"{MIRROR}/") else f"docs/{src}"
    return _rewrite(markdown, repo_path, src)


# --- the CLI reference -------------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return {} if action is None else dict(action.choices)


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return {} if action is None else {a.dest: a.help or "" for a in action._choices_actions}


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _options_table(parser: argparse.ArgumentParser) -> str:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        name = ", ".join(action.option_strings) or action.dest
        if action.option_strings and action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}" if not action.choices else ""
        if action.choices and action.nargs != 0:
            name += " {" + ",".join(map(str, action.choices)) + "}"
        default = "" if action.default in (None, False, argparse.SUPPRESS) or action.required else f"`{action.default}`"
        required = "yes" if action.required else ""
        rows.append(f"| `{_escape(name)}` | {required} | {_escape(default)} | {_escape(action.help or '')} |")
    if not rows:
        return ""
    return "| argument | required | default | help |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"


def _command_section(path: str, parser: argparse.ArgumentParser, help: str, level: int) -> list[str]:
    out = [f"{'#' * level} `{path}`", ""]
    if help:
        out += [_escape(help), ""]
    out += ["```text", parser.format_usage().strip(), "```", ""]
    for text in (parser.description, parser.epilog):
        if text:
            out += ["```text", text.strip(), "```", ""]
    table = _options_table(parser)
    if table:
        out += [table]
    helps = _helps(parser)
    for name, sub in _subcommands(parser).items():
        out += _command_section(f"{path} {name}", sub, helps.get(name, ""), min(level + 1, 4))
    return out


def cli_reference() -> str:
    """Markdown for every command of ``speechalign``, grouped by stage as ``speechalign --help`` groups them."""
    from speechalign.cli import build_parser

    parser = build_parser()
    helps, commands = _helps(parser), _subcommands(parser)
    out = ["# Command-line reference", "",
           "Generated from `speechalign.cli.build_parser()` when the site is built (`docs/hooks/docs_site.py`), so it "
           "lists exactly what the installed version accepts. `speechalign <command> -h` prints the same.", "",
           "```text", parser.format_help().strip(), "```", ""]
    for title, names in parser.stages:
        stage, _, what = title.partition(": ")   # "prepare: corpora -> ..." -> "## Prepare", then what it does
        out += [f"## {stage[:1].upper()}{stage[1:]}", ""] + ([_escape(what[:1].upper() + what[1:]), ""] if what else [])
        for name in names:
            out += _command_section(f"speechalign {name}", commands[name], helps.get(name, ""), 3)
    return "\n".join(out) + "\n"
