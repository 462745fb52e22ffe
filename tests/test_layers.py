"""Imports point downward only: config -> selection -> sparsify -> exporter -> plugins -> engines ->
runners -> pipeline -> transcribe / evaluation -> validation / search / bench -> cli.

Every `import` of every module (lazy ones inside functions included) is read with `ast`; a module
may import its own layer or any layer below, never one above. A new module must be given a layer
here, so the direction is decided when it is added, not found later. Within a layer, modules may
not import each other in a circle (a lazy import only hides one): the shared piece moves down.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "whisper_eas"

# Top-level module or package of whisper_eas -> layer (lower = more basic).
LAYERS: dict[str, int] = {
    # base: no project imports above these
    "errors": 0, "deps": 0, "io_utils": 0,
    # configuration, data and model-agnostic pieces
    "config": 1, "defaults": 1, "tokenizer": 1, "audio": 1, "features": 1, "results": 1, "decoding": 1,
    "checkpoints": 1, "vad": 1, "vad_gate": 1, "repetition": 1, "languages": 1, "hash_stamps": 1,
    "selection": 2,
    "sparsify": 3, "decoder_step": 3, "static_graphs": 3,
    "exporter": 4,
    "plugins": 5,
    "engines": 6,
    "runners": 7,
    # the decode pipeline
    "guard": 8, "longform": 8, "window_decode": 8, "scheduler": 8, "batched_longform": 8, "alignment": 8,
    "hallucination": 8,
    "transcribe": 9, "outputs": 9, "evaluation": 9,
    "validation": 10, "search": 10, "benchmark": 10, "scaleout": 10, "serve": 10,
    "cli": 11,
}


def _unit(module: str) -> str:
    """`whisper_eas.runners.graphs` -> `runners`."""
    return module.split(".")[1]


def _project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every whisper_eas import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("whisper_eas."):
                found.append((node.lineno, node.module))
            elif node.module == "whisper_eas":  # from whisper_eas import cli
                found += [(node.lineno, f"whisper_eas.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("whisper_eas.")]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")  # the API surface re-exports


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file (`package` is the
    whisper_eas folder). `from pkg import name` imports the submodule `pkg.name` where there is one,
    else `pkg` itself."""
    def name(path: Path) -> str:
        parts = path.relative_to(package.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    paths = {name(p): p for p in package.rglob("*.py")}
    graph = {}
    for module, path in paths.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                            for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[module] = {t for t in targets if t in paths and t != module}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_every_module_has_a_layer():
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()}
    assert units <= set(LAYERS), f"give these a layer in tests/test_layers.py: {sorted(units - set(LAYERS))}"


def test_imports_point_downward():
    upward = []
    for path in _modules():
        own = LAYERS[path.relative_to(PACKAGE).parts[0].removesuffix(".py")]
        for line, module in _project_imports(path):
            target = _unit(module)
            if LAYERS.get(target, -1) > own:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {module} "
                              f"(layer {LAYERS[target]} above {own})")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_no_import_circles():
    circles = import_circles(import_graph(PACKAGE))
    assert not circles, "modules that import each other in a circle:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_circle_check_finds_a_lazy_circle(tmp_path):
    package = tmp_path / "whisper_eas"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("from whisper_eas.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from whisper_eas.c import g\n")
    (package / "c.py").write_text("import whisper_eas.a\n")
    (package / "d.py").write_text("from whisper_eas.a import x\n")
    graph = import_graph(package)
    assert graph["whisper_eas.a"] == {"whisper_eas.sub.b"} and graph["whisper_eas.d"] == {"whisper_eas.a"}
    assert import_circles(graph) == [["whisper_eas.a", "whisper_eas.c", "whisper_eas.sub.b"]]


@pytest.mark.parametrize("source,expected", [
    ("from whisper_eas.runners.base import Runner", [(1, "whisper_eas.runners.base")]),
    ("def f():\n    from whisper_eas.cli import main", [(2, "whisper_eas.cli")]),
    ("import whisper_eas.search.run as r", [(1, "whisper_eas.search.run")]),
    ("from . import x\nimport numpy", []),
])
def test_the_check_sees_lazy_and_plain_imports(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _project_imports(path) == expected
