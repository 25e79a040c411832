"""The model card: sentence-transformers' own README.md, extended with our evaluation protocol.

sentence-transformers writes a card on `model.save()` (architecture, training logs, per-dim
evaluator metrics, library versions). We append one section, between markers so that a re-save
replaces it rather than stacking copies, with what a reader needs to trust the numbers: corpus
size, question counts per split, how the split was made, the random baseline, per-dimension
validation ndcg@10 for the base and the tuned model, the cautions the Fine-tune page shows (pairs
only from the documents' structure flatter the validation curves) and the guard-rail warnings,
and our versions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.embeddings import model_card_path, run_model_dir
from core.errors import ConfigError, RunError
from core.questions.sources import sources_text, structure_only_caution
from core.runs.folders import Run, load_run, write_text_atomic
from core.text import replace_marked_section

START = "<!-- ragbench:protocol:start -->"
END = "<!-- ragbench:protocol:end -->"


def random_baseline(corpus_size: int) -> dict[str, float]:
    """Expected headline metrics of a uniformly random ranking (one gold chunk per question among
    `corpus_size` chunks), exact, from core.evaluation.statistics."""
    from core.evaluation.random_ranker import random_ranker_expected_one

    full = random_ranker_expected_one(max(1, int(corpus_size)), 1)
    keep = ("hit_rate@1", "hit_rate@5", "hit_rate@10", "mrr@10", "ndcg@10")
    return {k: full[k] for k in keep}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"


def protocol_section(run: Run, metrics: dict[str, Any], warnings: list[str]) -> str:
    """Markdown for our protocol section (between the markers)."""
    cfg = run.manifest.config
    data = metrics.get("data", {})
    corpus_size = int(data.get("corpus_size", 0))
    base = metrics.get("base", {})
    final = metrics.get("final", {})
    dims = [str(d) for d in metrics.get("dims", sorted({*base, *final}, key=int, reverse=True))]
    prompt = metrics.get("query_prompt")
    base_model = cfg.get("base_model", {})
    lines = [
        START,
        "",
        "## Evaluation protocol (ragbench)",
        "",
        "| Setting | Value |",
        "|---|---|",
        f"| Corpus | {corpus_size} chunks (corpus run `{_corpus_id(run)}`); every chunk is a "
        "candidate for every question |",
        f"| Question set | qa run `{run.manifest.parents.get('qa', '')}`"
        f"{'; ' + sources_text(data['sources']) if data.get('sources') else ''} |",
        f"| Questions | train {data.get('n_train', '–')} · validation {data.get('n_validation', '–')}"
        f" · test {data.get('n_test', '–')} |",
        f"| Split | {data.get('split_method', 'by chunk')}: all questions about one chunk, and the "
        "chunks that hold one question's evidence (chunks overlap), sit in one split, so no "
        "validation or test chunk was a training positive or a mined negative |",
        f"| Query prompt | {f'`{prompt}`' if prompt else 'none'} (the same in training and evaluation) |",
        f"| Base model | {base_model.get('source', '')}: `{base_model.get('ref', '') or 'all-MiniLM-L6-v2'}` |",
        f"| Loss | MatryoshkaLoss over {'CachedMNRL' if cfg.get('loss') == 'cached_mnrl' else 'MNRL'}, "
        f"dims {metrics.get('dims')}, weights {metrics.get('weights')}, NO_DUPLICATES batches |",
        f"| Hyper-parameters | epochs {cfg.get('epochs')}, batch {cfg.get('batch_size')}, lr "
        f"{cfg.get('learning_rate')}, warmup {cfg.get('warmup_ratio')}, {cfg.get('scheduler')}, "
        f"weight decay {cfg.get('weight_decay')}, max length {cfg.get('max_seq_length') or 'model'}, "
        f"seed {cfg.get('seed')}, hard negatives {'on' if cfg.get('hard_negatives') else 'off'} |",
        f"| Steps | {metrics.get('steps', '–')}"
        f"{' (stopped early by the user)' if metrics.get('stopped_early') else ''} |",
        "",
        "### Random baseline",
        "",
        f"A random ranking of {corpus_size} chunks would score "
        + ", ".join(f"{k} {v:.4f}" for k, v in random_baseline(corpus_size).items())
        + ".",
        "",
        "### Validation ndcg@10 per dimension",
        "",
        "| dim | base | tuned | Δ |",
        "|---:|---:|---:|---:|",
    ]
    for dim in dims:
        b, f = base.get(dim), final.get(dim)
        delta = f - b if isinstance(b, (int, float)) and isinstance(f, (int, float)) else None
        lines.append(
            f"| {dim} | {_fmt(b)} | {_fmt(f)} | {'–' if delta is None else f'{delta:+.4f}'} |"
        )
    lines += [
        "",
        f"{data.get('n_validation', '–')} validation questions. These guided training (per-epoch "
        "evaluation), so report the test split from ragbench's Retrieval eval stage, with "
        "bootstrap confidence intervals and a paired test, as the headline result.",
        "",
        "### Cautions and guard-rail warnings",
        "",
    ]
    lines += _caution_lines(data, warnings)
    versions = run.manifest.versions
    lines += [
        "",
        "### Library versions",
        "",
        ", ".join(f"{k} {v}" for k, v in versions.items()) or "unknown",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def _caution_lines(data: dict[str, Any], warnings: list[str]) -> list[str]:
    """The Fine-tune page's caution on pairs only from the documents' structure, then the
    guard-rail warnings; what held when there is none."""
    cautions = [c for c in (structure_only_caution(data.get("sources") or {}),) if c]
    cautions += list(warnings)
    if cautions:
        return [f"- {c}" for c in cautions]
    return [
        "No guard-rail fired: the native dimension is among the dims, pairs are (anchor, "
        "positive), batches have no duplicates and hold at least 16 pairs, and the query "
        "prompt is the same in training and evaluation."
    ]


def _corpus_id(run: Run) -> str:
    qa_id = run.manifest.parents.get("qa")
    try:
        return load_run(qa_id, root=run.path.parent.parent).manifest.parents.get("corpus", "")
    except RunError:
        return ""


def extend_card(card: str, section: str) -> str:
    """`card` with our protocol section appended, replacing an earlier copy of it."""
    return replace_marked_section(card, section, START, END)


def protocol_part(card: str) -> str:
    """Our protocol section of a model card (between the markers), '' when it has none."""
    if START in card and END in card:
        return card[card.index(START) + len(START) : card.index(END)]
    return ""


def write_model_card(run: Run, *, metrics: dict[str, Any], warnings: list[str]) -> Path:
    """Append our protocol to the README.md in the run's model folder (create it if missing)."""
    path = model_card_path(run)
    card = path.read_text(encoding="utf-8") if path.exists() else f"# {run.manifest.name}\n"
    write_text_atomic(path, extend_card(card, protocol_section(run, metrics, warnings)))
    return path


def read_model_card(run: Run | str, front_matter: bool = False) -> str | None:
    """The model card's markdown (without the YAML front matter unless asked), or None."""
    run = load_run(run) if isinstance(run, str) else run
    path = model_card_path(run)
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    if not front_matter and text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            text = text[end + 4 :].lstrip("\n")
    return text


def push_to_hub(run: Run | str, repo_id: str, token: str, private: bool = True) -> str:
    """Upload a model run's folder (weights, config, card) to the Hugging Face Hub; return its URL.

    Needs a network and `RAGBENCH_ONLINE=1` (so HF_HUB_OFFLINE is not set). Not exercised by the
    offline test suite.
    """
    from core.runs.actor import require

    run = load_run(run) if isinstance(run, str) else run
    require("run", f"push {run.id} to the Hub")  # it publishes: more than a download
    if not repo_id or "/" not in repo_id:
        raise ConfigError(f"{repo_id!r} is not a Hub repo id.", fix="use 'user-or-org/model-name'")
    if not token:
        raise ConfigError("Pushing to the Hub needs a token.", fix="paste a write token")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ConfigError(
            "Pushing to the Hub needs a network, but HF_HUB_OFFLINE=1.",
            fix="restart the app with RAGBENCH_ONLINE=1",
        )
    folder = run_model_dir(run)
    if not folder.is_dir():
        raise RunError(f"Run {run.id} has no saved model.", fix="wait for the fine-tune to finish")
    from huggingface_hub import HfApi

    from core.runs.audit import record_export

    record_export([run.id], f"pushed to the Hub as {repo_id}")
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=str(folder),
        commit_message=f"ragbench fine-tune {run.id}",
    )
    return f"https://huggingface.co/{repo.repo_id}"
