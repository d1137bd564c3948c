"""The package's import graph: no cycles, imports run downward, every module imports alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlxwx"

# Layers, lowest first: a module imports only from its own layer or lower ones, and within the
# stage layer only from its own stage (a stage never imports another stage).
LAYERS = [
    {"mlxwx.types", "mlxwx.errors", "mlxwx._blas", "mlxwx._callable"},
    {
        "mlxwx.audio",
        "mlxwx.ops",
        "mlxwx.kernels",
        "mlxwx.device",
        "mlxwx.writers",
        "mlxwx.dtw",
        "mlxwx.rttm",
    },
    {"mlxwx.models"},
    {"mlxwx.weights"},
    {"mlxwx.asr", "mlxwx.vad", "mlxwx.align", "mlxwx.diarize"},
    {"mlxwx.pipeline"},
    {"mlxwx.cli", "mlxwx", "mlxwx.__main__"},
]


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Import statements, leaving out `if TYPE_CHECKING:` blocks (not run)."""
    out: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The mlxwx modules `name` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
            continue
        assert isinstance(node, ast.ImportFrom)
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer(module: str) -> tuple[int, str]:
    """(layer index, the group it belongs to) of a module: its longest matching group."""
    best = None
    for i, group in enumerate(LAYERS):
        for g in group:
            if (module == g or module.startswith(g + ".")) and (
                best is None or len(g) > len(best[1])
            ):
                best = (i, g)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycles.append([*stack[stack.index(n) :], n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
    assert "mlxwx.asr.engine" in edges and "mlxwx.pipeline" in edges["mlxwx.cli.run"]


def test_imports_run_downward():
    wrong = []
    for module, targets in graph().items():
        (rank, group) = layer(module)
        for target in targets:
            (other, other_group) = layer(target)
            if other > rank or (other == rank == 4 and other_group != group):
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = sorted(m for m in modules() if m != "mlxwx.__main__")
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'mlxwx' or m.startswith('mlxwx.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
        "print('ok', len(sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=PACKAGE.parent
    )
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-3000:]
