"""core/ is the shared library: it must not depend on the GUI, the trainer or the command line."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"app", "training", "cli", "imgui_bundle", "glfw", "OpenGL"}


def test_core_sources_import_nothing_forbidden():
    offenders = []
    for path in sorted((ROOT / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_importing_core_loads_no_gui_or_training_modules():
    code = ("import sys, core.engine, core.checkpoint, core.mesh, core.video, core.bench; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _fresh(code: str, **env: str) -> str:
    """Run `code` in a new interpreter (nothing imported yet, unlike this test session) -> its stdout."""
    import os
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, **env}, timeout=120)
    return out.stdout.strip()


def test_reading_a_network_pickle_imports_no_training_code(snapshot_pkl):
    """The restricted unpickler builds stubs: the original's module names never import our training/."""
    code = ("import sys; from core.checkpoint import load_generator; "
            f"load_generator({str(snapshot_pkl)!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'app', 'cli')))")
    assert _fresh(code) == "[]"


def _project_imports(module: str) -> set[str]:
    """The project modules `module` imports anywhere: at the top or inside a function (a function-local
    import still makes a cycle, it only hides it until the function runs)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {n for n in names if (ROOT / (n.replace(".", "/") + ".py")).is_file()}


def test_checkpoint_layers_import_only_downwards():
    """Checked kwargs -> generator at the bottom, the format readers above it, the format dispatch and
    load_generator above them, the description on top: no module imports one of its own layer or above."""
    layers = [["core.generator_build"], ["core.network_pickle", "core.exchange"], ["core.checkpoint"],
              ["core.describe"]]
    stack = {m for layer in layers for m in layer}
    for i, layer in enumerate(layers):
        below = {m for lower in layers[:i] for m in lower}
        for module in layer:
            assert _project_imports(module) & stack <= below, (module, _project_imports(module) & stack - below)


def test_modules_import_without_cycles():
    """No two modules of core/, training/, cli/, app/ or remote/ import each other, directly or through others
    (function-local imports included)."""
    modules = [f"{pkg}.{p.stem}" for pkg in ("core", "training", "cli", "app", "remote")
               for p in sorted((ROOT / pkg).glob("*.py"))]
    graph = {m: _project_imports(m) for m in modules}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return False
    cycles = [(m, d) for m in modules for d in graph[m] if d in graph and d != m and reaches(d, m)]
    assert not cycles, cycles
