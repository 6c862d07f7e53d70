"""The import rules of DESIGN.md's table, checked on the source (``ast``, nothing imported): every import
statement of every module under speechalign/ and data_prep/, at module level or inside a function, so an
upward import fails here instead of being found by reading."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("text", "data", "models", "train", "decode", "retrieval")

# What each part may import of ours besides itself (DESIGN.md). speechalign.config holds the typed config
# dataclasses every part may read; speechalign.atomic (write temp, then rename) and speechalign.tables (TSV and
# markdown text of a result table) sit below every part. cli/ (a module per stage),
# cli_examples.py and report.py sit on top and may import anything.
MAY_IMPORT = {
    "text": {"atomic", "tables"},
    "data": {"text", "config", "atomic", "tables"},
    "models": {"config", "atomic", "tables"},
    "train": {"data", "models", "text", "config", "atomic", "tables"},
    "decode": {"data", "models", "text", "config", "atomic", "tables"},
    "retrieval": {"data", "models", "config", "atomic", "tables"},
    "config": {"atomic", "tables"},
    "atomic": set(),
    "tables": set(),
    "data_prep": {"text", "data", "atomic", "tables"},   # the adapters build on manifests, audio reading and the contamination guard
}
NEVER_THIRD_PARTY = {"text": {"torch"}}   # "never: text importing torch"

# Imports that break the table today, each named (importing module, imported module) so that nothing
# else in the same module is let through. Fixing one means deleting its line here.
KNOWN_EXCEPTIONS = {
    # data/features.py precomputes the encoder's front end, whose classes live in models/frontend.py.
    ("speechalign.data.features", "speechalign.models.frontend"),
    # load_experiment returns the experiment's tokenizer (and Whisper's vocabulary) beside the model.
    ("speechalign.models.experiment", "speechalign.text"),
    ("speechalign.models.experiment", "speechalign.text.whisper_vocab"),
    # embed shares decode's --skip-bad policy (check_bad), which lives in decode/run.py.
    ("speechalign.retrieval.embed", "speechalign.decode.run"),
    # retrieval over texts (the transcribe-then-compare cascade) normalizes texts and reads decode's recogs.
    ("speechalign.retrieval.text", "speechalign.text"),
    ("speechalign.retrieval.text", "speechalign.decode.report"),
    # the trainer's validation: dev CER (greedy CTC, CerScorer) and dev retrieval R@1.
    ("speechalign.train.trainer", "speechalign.decode.cer"),
    ("speechalign.train.trainer", "speechalign.decode.ctc"),
    ("speechalign.train.trainer", "speechalign.retrieval.vectors"),
    ("speechalign.train.trainer", "speechalign.retrieval.yubao"),
    # the ablation table reads decode's CER tables and writes through its atomic writer.
    ("speechalign.train.ablation", "speechalign.decode.report"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str | None:
    """The table row of one of our modules; None for the top (cli, report) and anything not ours."""
    names = module.split(".")
    if names[0] == "data_prep":
        return "data_prep"
    if names[0] != "speechalign" or len(names) < 2:
        return None
    if names[1] in PARTS or names[1] in ("config", "atomic", "tables"):
        return names[1]
    return None


def imports(path: Path) -> list[tuple[str, int]]:
    """Absolute module names imported by a file (relative imports resolved), with their line."""
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            # ``from speechalign import models`` imports the subpackage itself.
            out += [(f"{name}.{a.name}" if name in ("speechalign", "data_prep") else name, node.lineno)
                    for a in node.names]
    return sorted(set(out), key=lambda x: (x[1], x[0]))


def sources() -> list[Path]:
    return sorted((ROOT / "speechalign").rglob("*.py")) + sorted((ROOT / "data_prep").rglob("*.py"))


def test_the_parser_resolves_what_the_rules_need():
    assert part_of("speechalign.data.contamination") == "data" and part_of("speechalign.cli") is None
    assert part_of("speechalign.config") == "config" and part_of("data_prep.common") == "data_prep"
    lm = dict(imports(ROOT / "speechalign" / "decode" / "lm.py"))
    assert "speechalign.data.contamination" in lm and "speechalign.data.manifest" in lm   # a function-level import
    assert len(sources()) > 50


def test_every_import_follows_the_layering():
    broken = []
    for path in sources():
        module = module_name(path)
        part = part_of(module)
        if part is None:   # cli/, cli_examples.py, report.py, __init__.py: may import everything
            continue
        for name, line in imports(path):
            where = f"{path.relative_to(ROOT)}:{line}: {module} imports {name}"
            if name.split(".")[0] in NEVER_THIRD_PARTY.get(part, ()):
                broken.append(where)
            target = part_of(name)
            if name.split(".")[0] not in ("speechalign", "data_prep") or target == part:
                continue
            if target not in MAY_IMPORT[part] and (module, name) not in KNOWN_EXCEPTIONS:
                broken.append(f"{where} ({part} may import {sorted(MAY_IMPORT[part]) or 'nothing of ours'})")
    assert not broken, "imports against DESIGN.md's table:\n" + "\n".join(broken)


def import_cycles() -> list[list[str]]:
    """Groups of our modules that import each other, directly or through others (any import statement)."""
    mods = {module_name(p): p for p in sources()}
    graph = {m: sorted({n for n, _ in imports(p) if n in mods and n != m}) for m, p in mods.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:   # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_module_imports_itself_through_others():
    """issue 33: decode/run.py and decode/translation.py imported each other; what both need is in decode/report.py."""
    assert import_cycles() == []
