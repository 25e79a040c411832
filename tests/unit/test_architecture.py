"""Architecture rules: core never imports streamlit; light core modules stay light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"
HEAVY = ("torch", "sentence_transformers", "ragas", "transformers", "chromadb", "langchain")
# Modules whose whole job is a heavy library; importing them may load it.
HEAVY_BY_DESIGN = {"core.finetune.job", "core.rag.judges"}


def module_name(path: Path) -> str:
    """core/evaluation/stage.py -> core.evaluation.stage; a package's __init__ -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_never_imports_streamlit(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(n == "streamlit" or n.startswith("streamlit.") for n in names), (
            f"{path.name} imports streamlit; core must stay headless"
        )


def test_light_core_modules_do_not_import_heavy_libraries():
    modules = [m for m in map(module_name, core_modules()) if m not in HEAVY_BY_DESIGN]
    code = (
        "import importlib, json, sys\n"
        f"mods = {modules!r}\n"
        "bad = {}\n"
        "for m in mods:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module(m)\n"
        f"    heavy = sorted(k for k in set(sys.modules) - before if k.split('.')[0] in {HEAVY!r})\n"
        "    if heavy: bad[m] = heavy[:5]\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    offenders = json.loads(out.stdout.strip().splitlines()[-1])
    assert offenders == {}, f"these core modules import heavy libraries at import time: {offenders}"
