"""The package's import layers, read from the source (every import, lazy ones inside functions too):
a module imports only from its own layer or the layers below it, so the folders show the
architecture and no import cycle can form between them.

    core base (config, names, registry, metrics, noise, seeding, version, tracking, ipc)
      <- dqt.core.learning <- dqt.core.acting <- dqt.core.running <- sweeps, analysis, dqt
    and core never imports sweeps or analysis; analysis never needs dqt.core.learning/acting/running.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["core", "dqt.core.learning", "dqt.core.acting", "dqt.core.running"]  # lowest first


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the core layer a module belongs to (None outside core)."""
    if module != "dqt.core" and not module.startswith("dqt.core."):
        return None
    for i in range(len(LAYERS) - 1, 0, -1):
        if module == LAYERS[i] or module.startswith(LAYERS[i] + "."):
            return i
    return 0


def imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def module_name(path: Path) -> str:
    """The module's name in the `dqt` package (core/x.py is dqt.core.x)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(["dqt", *(parts[:-1] if parts[-1] == "__init__" else parts)])


def test_core_layers_import_only_downwards_and_never_sweeps_or_analysis():
    bad = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        mine = layer_of(module_name(path))
        for target in imports(path):
            if target.startswith(("dqt.sweeps", "dqt.analysis", "dqt.cli", "dqt.ui")):
                bad.append(f"{module_name(path)} imports {target}")
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                bad.append(f"{module_name(path)} ({LAYERS[mine]}) imports {target} ({LAYERS[theirs]})")
    assert not bad, "\n".join(bad)


def test_analysis_needs_no_trainer():
    bad = [f"{module_name(p)} imports {t}" for p in sorted((ROOT / "analysis").rglob("*.py")) for t in imports(p)
           if (layer_of(t) or 0) > 0 or t.startswith("dqt.sweeps")]
    assert not bad, "\n".join(bad)
