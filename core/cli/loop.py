"""The whole loop from one TOML file: documents, questions (the sample set, the LLM, or an
imported QA file), fine-tune, retrieval eval and RAG eval, each stage through the same command
as on its own. See data/sample/loop.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from core.cli.commands import (
    Context,
    eval_retrieval,
    finetune,
    import_questions,
    ingest,
    questions,
    rag_eval,
)
from core.errors import ConfigError


def read_loop_config(path: Path) -> dict[str, Any]:
    """The loop's TOML, with a clear error when it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read the loop config {path}.", found=str(exc)) from exc


def _questions(ctx: Context, q: dict[str, Any], corpus: str | None, base_dir: Path) -> str:
    source = q.get("source", "sample")
    if source != "import":
        if corpus is None:
            raise ConfigError("The questions need a corpus.", fix="add a [documents] section")
        return questions(ctx, corpus, source=source, options=q.get("generation", {}))
    file = q.get("file")
    if not file:
        raise ConfigError("An imported question source needs a file.", fix="set questions.file")
    path = Path(file) if Path(file).is_absolute() else base_dir / file
    qa = import_questions(
        ctx,
        str(path),
        corpus_run=corpus if q.get("match_corpus", False) else None,
        mapping=q.get("mapping", {}),
        gate=q.get("gate", True),
        split=q.get("split", {}),
    )
    assert qa is not None  # not a dry run
    return qa


def run_loop(ctx: Context, config_path: Path) -> dict[str, str]:
    """Run every enabled stage in order; returns the run id of each."""
    config = read_loop_config(config_path)
    ids: dict[str, str] = {}
    q = config.get("questions", {})
    docs = config.get("documents")
    imported_alone = q.get("source") == "import" and not q.get("match_corpus", False)
    if docs is not None and not imported_alone:
        ids["corpus"] = ingest(
            ctx,
            docs.get("paths", ["sample"]),
            name=docs.get("name", ""),
            chunking=docs.get("chunking", {}),
            index=docs.get("index", True),
        )
    elif docs is None and not imported_alone:
        ids["corpus"] = ingest(ctx, ["sample"], chunking={}, index=True)
    ids["qa"] = _questions(ctx, q, ids.get("corpus"), config_path.parent)
    if "corpus" not in ids:  # an imported file's contexts made the corpus
        from core.runs.folders import load_run

        ids["corpus"] = load_run(ids["qa"]).manifest.parents["corpus"]
    models = ["default"]
    ft = config.get("finetune", {})
    if ft.get("enabled", True):
        ids["model"] = finetune(
            ctx, ids["qa"], options=ft.get("options", {}), base=ft.get("base", "default")
        )
        models.append(f"run:{ids['model']}")
    ev = config.get("retrieval_eval", {})
    if ev.get("enabled", True):
        ids["retrieval_eval"] = eval_retrieval(
            ctx, ids["qa"], models=models, options=ev.get("options", {})
        )
    rag = config.get("rag_eval", {})
    if rag.get("enabled", False):
        ids["ragas_eval"] = rag_eval(
            ctx,
            ids["qa"],
            tuned=f"run:{ids['model']}" if "model" in ids else None,
            rag=rag.get("options", {}),
            metrics=rag.get("metrics"),
            repeats=int(rag.get("repeats", 1)),
            hybrid=bool(rag.get("hybrid", False)),
        )
    ctx.out.emit(
        {"stage": "loop", "runs": ids}, "runs: " + ", ".join(f"{k} {v}" for k, v in ids.items())
    )
    return ids
