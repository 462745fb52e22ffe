"""Imports point downward only: config -> selection -> sparsify -> exporter -> plugins -> engines ->
runners -> pipeline -> transcribe / evaluation -> validation / search / bench -> cli.

Every `import` of every module (lazy ones inside functions included) is read with `ast`; a module
may import its own layer or any layer below, never one above. A new module must be given a layer
here, so the direction is decided when it is added, not found later.
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
    "checkpoints": 1, "vad": 1, "vad_gate": 1, "repetition": 1, "languages": 1,
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
