"""The package's shape: layers import only downwards, no import circle, small modules and functions.

``ops`` is the core and imports nothing else of softseg; ``data`` builds on ``ops``; ``train`` on
both; ``study`` on all three; ``cli`` (and the package root) sit on top. ``atomic`` is a leaf
utility any layer may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "softseg"
# what each layer may import from softseg (besides itself)
ALLOWED = {
    "atomic": set(),
    "ops": set(),
    "data": {"ops"},
    "train": {"ops", "data", "atomic"},
    "study": {"ops", "data", "train", "atomic"},
    "integrations": {"ops"},
}
MAX_MODULE_LINES = 420
MAX_FUNCTION_CODE_LINES = 60


def modules() -> dict[str, Path]:
    """``{"softseg.ops.resample": path, ...}`` for every module of the package."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(name: str, path: Path) -> set[str]:
    """softseg modules that ``name`` imports anywhere in its file (deferred imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        known = modules()
        out |= {t for t in targets if t in known and t != name}
    return out


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "root"


def test_layers_import_only_downwards():
    wrong = []
    for name, path in modules().items():
        own = layer(name)
        if own not in ALLOWED:
            continue  # cli, __main__ and the package root may use everything
        for target in imported(name, path):
            if layer(target) != own and layer(target) not in ALLOWED[own]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_import_circle():
    graph = {name: imported(name, path) for name, path in modules().items()}
    # a package's __init__ importing its own modules is not a circle; a module importing its
    # package's __init__ back would be, so only drop the edges from a package to its children
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def code_lines(node: ast.AST, source: list[str]) -> int:
    """Lines of a function's body that hold code: not its signature (CLI commands declare their
    options there), docstring, blank lines or comments."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    lines = range(body[0].lineno, node.end_lineno + 1)
    return sum(
        1 for i in lines if source[i - 1].strip() and not source[i - 1].strip().startswith("#")
    )


def test_modules_and_functions_stay_small():
    too_big = []
    for name, path in modules().items():
        source = path.read_text().splitlines()
        if len(source) > MAX_MODULE_LINES:
            too_big.append(f"{name}: {len(source)} lines")
        for node in ast.walk(ast.parse("\n".join(source))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = code_lines(node, source)
                if n > MAX_FUNCTION_CODE_LINES:
                    too_big.append(f"{name}.{node.name}: {n} lines of code")
    assert not too_big, "split these:\n" + "\n".join(too_big)


def test_the_layering_check_sees_a_violation(tmp_path, monkeypatch):
    # the check must be able to fail: an ops module importing train is reported
    fake = tmp_path / "softseg" / "ops"
    fake.mkdir(parents=True)
    (tmp_path / "softseg" / "__init__.py").write_text("")
    (tmp_path / "softseg" / "train").mkdir()
    (tmp_path / "softseg" / "train" / "__init__.py").write_text("")
    (tmp_path / "softseg" / "train" / "loop.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text("from ..train.loop import x\n")
    monkeypatch.setitem(globals(), "SRC", tmp_path / "softseg")
    with pytest.raises(AssertionError, match="softseg.ops.bad imports softseg.train.loop"):
        test_layers_import_only_downwards()
