"""The whole loop from one TOML file: documents, questions (the sample set, the LLM, pairs from
the documents, or an imported QA file), fine-tune, retrieval eval, a cross-fit (optional) and RAG
eval, each stage
through the same command as on its own; an optional [reranker] is trained after the fine-tune and
every retriever of the retrieval eval is also evaluated reranked by it (with `rerank = true` in
[rag_eval], RAG eval also answers with the tuned model reranked by it). With `evaluate_on = "sample"` the model trains on one
set (say pairs from the documents, aligned with the sample's splits) and is evaluated on the
hand-written one. See data/sample/loop.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from core.cli.commands import (
    Context,
    document_pairs,
    eval_retrieval,
    finetune,
    import_questions,
    ingest,
    questions,
    rag_eval,
)
from core.cli.crossfit import config_from_options, run_crossfit_command
from core.cli.rerank import config_from_options as reranker_config
from core.cli.rerank import train_reranker
from core.errors import ConfigError


def read_loop_config(path: Path) -> dict[str, Any]:
    """The loop's TOML, with a clear error when it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read the loop config {path}.", found=str(exc)) from exc


def _questions(
    ctx: Context, q: dict[str, Any], corpus: str | None, base_dir: Path, evaluated: str | None
) -> str:
    source = q.get("source", "sample")
    if source != "import":
        if corpus is None:
            raise ConfigError("The questions need a corpus.", fix="add a [documents] section")
        if source == "documents":
            return _document_pairs(ctx, q, corpus, evaluated)
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


def _document_pairs(ctx: Context, q: dict[str, Any], corpus: str, evaluated: str | None) -> str:
    """Pairs from the documents, aligned with the evaluation set's splits unless `align = false`."""
    options = dict(q.get("documents", {}))
    if evaluated and options.pop("align", True):
        options["align_with"] = evaluated
    options.pop("align", None)
    qa = document_pairs(ctx, corpus, options=options)
    assert qa is not None  # not a dry run
    return qa


def _evaluation_set(ctx: Context, q: dict[str, Any], corpus: str | None) -> str | None:
    """The question set the model is evaluated on when it is not the one it trains on."""
    wanted = q.get("evaluate_on")
    if not wanted:
        return None
    if wanted != "sample":
        raise ConfigError(
            f"questions.evaluate_on = {wanted!r} is not understood.",
            fix='use "sample" (the hand-written set), or leave it out',
        )
    if corpus is None:
        raise ConfigError("evaluate_on needs a corpus.", fix="add a [documents] section")
    return questions(ctx, corpus, source="sample", options={})


def run_loop(ctx: Context, config_path: Path) -> dict[str, str]:
    """Run every enabled stage in order; returns the run id of each."""
    config = read_loop_config(config_path)
    rag, reranker = config.get("rag_eval", {}), config.get("reranker", {})
    if rag.get("enabled", False) and rag.get("rerank") and not reranker.get("enabled", False):
        raise ConfigError(  # said before any stage runs
            "The loop's [rag_eval] asks to rerank (rerank = true), but no reranker is trained.",
            found="[reranker] is missing or has enabled = false",
            fix="enable the [reranker] section, or set rerank = false",
        )
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
    evaluation_qa = _evaluation_set(ctx, q, ids.get("corpus"))
    if evaluation_qa:
        ids["evaluation_qa"] = evaluation_qa
    ids["qa"] = _questions(ctx, q, ids.get("corpus"), config_path.parent, evaluation_qa)
    if "corpus" not in ids:  # an imported file's contexts made the corpus
        from core.runs.folders import load_run

        ids["corpus"] = load_run(ids["qa"]).manifest.parents["corpus"]
    evaluated = evaluation_qa or ids["qa"]
    models = ["default"]
    ft = config.get("finetune", {})
    if ft.get("enabled", True):
        ids["model"] = finetune(
            ctx, ids["qa"], options=ft.get("options", {}), base=ft.get("base", "default")
        )
        models.append(f"run:{ids['model']}")
    rr = config.get("reranker", {})
    ev_options = dict(config.get("retrieval_eval", {}).get("options", {}))
    if rr.get("enabled", False):
        cfg = reranker_config(
            ids["qa"], rr.get("options", {}), rr.get("start", "default"), rr.get("miner", "default")
        )
        ids["reranker"] = train_reranker(ctx, cfg, rr.get("name", ""))
        ev_options["rerankers"] = [*ev_options.get("rerankers", []), f"run:{ids['reranker']}"]
    ev = config.get("retrieval_eval", {})
    if ev.get("enabled", True):
        ids["retrieval_eval"] = eval_retrieval(ctx, evaluated, models=models, options=ev_options)
    cf = config.get("crossfit", {})
    if cf.get("enabled", False):
        ids["crossfit_eval"] = run_crossfit_command(
            ctx,
            config_from_options(
                ids["qa"], ft.get("options", {}), ft.get("base", "default"), cf.get("options", {})
            ),
        )
    rag = config.get("rag_eval", {})
    if rag.get("enabled", False):
        ids["ragas_eval"] = rag_eval(
            ctx,
            evaluated,
            tuned=f"run:{ids['model']}" if "model" in ids else None,
            rag=rag.get("options", {}),
            metrics=rag.get("metrics"),
            repeats=int(rag.get("repeats", 1)),
            hybrid=bool(rag.get("hybrid", False)),
            reranker=f"run:{ids['reranker']}" if "reranker" in ids and rag.get("rerank") else "",
        )
    ctx.out.emit(
        {"stage": "loop", "runs": ids}, "runs: " + ", ".join(f"{k} {v}" for k, v in ids.items())
    )
    return ids
