"""Architecture rules: the layout explains the product, and the code keeps to it.

- core never imports streamlit or pages; light modules do not load torch & co at import time;
- a stage subpackage imports the cross-cutting modules and the stages it consumes, never a later
  one: documents -> questions -> evaluation -> (finetune | rag) -> report, with runs, the
  embeddings, the LLM client and the other cross-cutting modules below every stage;
- no module over ~500 lines, no function over ~80 (the exceptions are listed with their reason);
- every module opens with a docstring saying what it holds.
"""

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

# The stages, in the order data flows; a stage may import the ones before it.
STAGES = (
    "documents",
    "questions",
    "evaluation",
    "finetune",
    "rerank",
    "crossfit",
    "rag",
    "report",
)
MAY_IMPORT = {
    "documents": set(),
    "questions": {"documents"},
    "evaluation": {"documents", "questions"},
    "finetune": {"documents", "questions", "evaluation"},  # never rag
    # a cross-encoder trained on the fine-tune's pairs, negatives mined with its guard-rails
    "rerank": {"documents", "questions", "evaluation", "finetune"},
    # K fine-tunes of one recipe and the evaluation over every question
    "crossfit": {"documents", "questions", "evaluation", "finetune"},
    "rag": {"documents", "questions", "evaluation"},  # never finetune
    "report": {"documents", "questions", "evaluation", "finetune", "rerank", "crossfit", "rag"},
}
# Cross-cutting modules at the bottom: every stage may use them, they use no stage.
CROSS_CUTTING = (
    "config",
    "errors",
    "progress",
    "text",
    "formatting",
    "jsonparse",
    "embeddings",
    "embedding_cache",
    "deferred_model",  # a model known by its recorded facts until it must encode
    "rerankers",  # cross-encoders: loading one and reordering a list (retrieval eval, the RAG chain)
    "llm",
    "charts",
    "runs",
    "team",  # who may sign in and with which role; the pages' gate and the upload quota
    "spreadsheet",  # CSV that opens as text in a spreadsheet: every export that leaves the app
)
# Entry points on top: they drive every stage.
ENTRY_POINTS = {"core.deletion", "core.__main__"}
ENTRY_PACKAGES = ("core.cli",)

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
LONG_FUNCTIONS = {
    "core.rag.chain._langchain_classes": "defines the LangChain subclasses inside a function so "
    "importing core.rag stays light (LangChain loads in ~2 s); the classes are small",
    "core.llm.backends.OpenAICompatibleBackend.chat": "one HTTP exchange with its whole failure "
    "taxonomy (timeout, 429, 5xx, auth, malformed body, no json_schema support) in one place, "
    "so every status code has exactly one handling",
    "core.questions.gate.apply_gate": "the gate's ordered pipeline (text rules, exact and near "
    "duplicates, answerability): the order is the semantics and reads best in one place",
    "core.finetune.config.FinetuneConfig._validate": "one check per field with its own message "
    "and fix, like sentence-transformers' constructors; splitting scatters the field list",
    "core.documents.stage.parse_files": "one loop over uploaded files where every skip reason "
    "(encrypted, scanned, corrupt, too big, duplicate name) is one branch",
    "core.questions.review.apply_review": "one pass over the review grid's rows where every "
    "edit kind (text, chunk, status, answer, added row) is one branch with its problem message",
    "pages.finetune.config_ui": "the fine-tune form: one widget per setting, in page order",
    "pages.retrieval_eval.setup_ui": "the evaluation form: one widget per choice, in page order",
}


def module_name(path: Path) -> str:
    """core/evaluation/stage.py -> core.evaluation.stage; a package's __init__ -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if p.name != "__main__.py")


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            if node.module == "core":
                found.update(f"core.{a.name}" for a in node.names if not a.name.startswith("__"))
    return found


def layer_of(module: str) -> str | None:
    """The stage or cross-cutting group a core module belongs to (None for entry points)."""
    parts = module.split(".")
    if module in ENTRY_POINTS or module == "core" or module.startswith(ENTRY_PACKAGES):
        return None
    if len(parts) >= 2 and parts[1] in STAGES:
        return parts[1]
    if len(parts) >= 2 and parts[1] in CROSS_CUTTING:
        return "cross-cutting"
    raise AssertionError(f"{module} is neither a stage, a cross-cutting module nor an entry point")


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: module_name(p))
def test_core_never_imports_streamlit_or_pages(path):
    bad = {m for m in imports_of(path) if m.split(".")[0] in ("streamlit", "pages")}
    assert not bad, f"{module_name(path)} imports {sorted(bad)}; core must stay headless"


def may_import(layer: str, target: str) -> bool:
    """Whether a module of `layer` may import core module `target`."""
    other = layer_of(target)
    if other is None:
        return False  # nothing imports an entry point
    if layer == "cross-cutting":
        return other == "cross-cutting"
    return other == "cross-cutting" or other == layer or other in MAY_IMPORT[layer]


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: module_name(p))
def test_a_module_imports_only_what_sits_below_it(path):
    module = module_name(path)
    layer = layer_of(module)
    if layer is None:
        return  # an entry point drives every stage
    targets = sorted(m for m in imports_of(path) if m.startswith("core."))
    wrong = [t for t in targets if not may_import(layer, t)]
    assert not wrong, f"{module} ({layer}) imports {wrong}, which sit above it"


def test_runs_import_no_other_core_module_but_config_errors_and_progress():
    for path in (CORE / "runs").glob("*.py"):
        used = {m for m in imports_of(path) if m.startswith("core.")}
        allowed = {
            "core.config",
            "core.errors",
            "core.progress",  # a job writes the stage's progress events to its run folder
            *(f"core.runs.{p.stem}" for p in (CORE / "runs").glob("*.py")),
        }
        assert used <= allowed, f"{module_name(path)} imports {sorted(used - allowed)}"


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: module_name(p))
def test_modules_read_in_one_sitting(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{module_name(path)} has no docstring saying what it holds"
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module_name(path)} has {lines} lines"


def long_functions() -> dict[str, int]:
    out: dict[str, int] = {}
    for folder in ("core", "pages"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = module_name(path)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            stack: list[tuple[ast.AST, str]] = [(tree, module)]
            while stack:
                node, prefix = stack.pop()
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.ClassDef):
                        stack.append((child, f"{prefix}.{child.name}"))
                    elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                        name = f"{prefix}.{child.name}"
                        length = child.end_lineno - child.lineno + 1
                        if length > MAX_FUNCTION_LINES:
                            out[name] = length
    return out


def test_functions_read_in_one_sitting():
    found = long_functions()
    unlisted = {name: n for name, n in found.items() if name not in LONG_FUNCTIONS}
    assert not unlisted, f"functions over {MAX_FUNCTION_LINES} lines: {unlisted}"
    stale = sorted(set(LONG_FUNCTIONS) - set(found))
    assert not stale, f"listed as long but no longer are (remove them from the list): {stale}"
    for name, n in found.items():
        assert n <= 130, f"{name} has {n} lines: even a listed exception must stay readable"


def test_no_test_fake_in_production_code_and_bench_stands_alone():
    for path in [
        *CORE.rglob("*.py"),
        *(ROOT / "bench").rglob("*.py"),
        *(ROOT / "pages").rglob("*.py"),
    ]:
        assert not {m for m in imports_of(path) if m.split(".")[0] == "tests"}, path
        assert "ScriptedBackend" not in path.read_text(encoding="utf-8"), path


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
