"""The dependency direction from DEVELOPERS.md: cli -> client -> router, context, sessions.

`sessions` imports nothing of ours, `context` only the session models, nothing imports
`cli`. `errors`, `_env`, `_lazy`, `_text` and `home` are leaves anyone may use. Checked on the source, so a
stray import fails here rather than in review.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "tether"
LEAVES = {"errors", "_env", "_lazy", "_text", "home"}
ALLOWED = {  # top-level part of tether -> parts it may import
    "sessions": {"sessions"},
    "context": {"context", "sessions"},
    "router": {"router", "sessions", "context"},
    "turn": {"turn", "router", "context", "sessions", "_aio"},  # the client's turn layer, never the client
}


def tether_imports(path: Path) -> set[str]:
    """The top-level tether parts a module imports (relative or absolute)."""
    tree = ast.parse(path.read_text())
    rel_parts = path.relative_to(PKG).parts[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel_parts[: len(rel_parts) - (node.level - 1)])
                target = base + (node.module.split(".") if node.module else [])
                if target:
                    found.add(target[0])
                else:
                    found.update(a.name for a in node.names)
            elif node.module == "tether":  # from tether import _env, errors, ...
                found.update(a.name for a in node.names)
            elif node.module and node.module.split(".")[0] == "tether":
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "tether" and len(parts) > 1:
                    found.add(parts[1])
    return {f.removesuffix(".py") for f in found}


def part_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_layers_point_one_way():
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        part = part_of(path)
        imports = tether_imports(path) - LEAVES - {part}
        if part in ALLOWED:
            bad = imports - ALLOWED[part]
            if bad:
                problems.append(f"{path.relative_to(PKG)} imports {sorted(bad)}")
        if part != "cli" and "cli" in imports:
            problems.append(f"{path.relative_to(PKG)} imports cli")
    assert not problems, "\n".join(problems)


def test_checker_sees_relative_imports():
    assert tether_imports(PKG / "sessions" / "jsonl.py") == {"errors", "home", "sessions"}
    assert "aclient" in tether_imports(PKG / "__init__.py")
