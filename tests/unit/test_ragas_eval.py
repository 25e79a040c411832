"""RAGAS scoring with a scripted judge: every metric's happy path and every failure type,
with exact scores and failure counts; retries, repeats, caching and token counts."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np
import pytest

from core.errors import ConfigError, LineageError, LLMError
from core.llm.client import LLM
from core.rag.answering import RagSample, save_samples
from core.rag.metrics import LLM_METRICS, NON_LLM_METRICS, RagasConfig
from core.rag.results import load_ragas_eval
from core.rag.side_by_side import per_question_table
from core.rag.stage import evaluate_rag, retry_failed
from core.rag.summary import summary_table
from core.runs.folders import create_run, load_run
from tests.support.scripted_llm import ScriptedBackend
from tests.unit.test_rag import FakeEncoder

GOLD = "The Debian archives are updated twice every day by the archive software."
OTHER = "Printers need a driver package called cups before they will print anything at all."
QUESTION = "How often are the Debian archives updated?"
RESPONSE = "The Debian archives are updated twice a day."
REFERENCE = "Twice every day."


def sample(
    sid: str = "s1", reference: str | None = REFERENCE, contexts=(OTHER, GOLD), **kw
) -> RagSample:  # noqa: ANN001
    ids = {GOLD: "c_gold", OTHER: "c_other"}
    data = {
        "id": sid,
        "user_input": QUESTION,
        "retrieved_contexts": list(contexts),
        "retrieved_ids": [ids[c] for c in contexts],
        "response": RESPONSE,
        "reference": reference,
        "reference_contexts": [GOLD],
        "gold_chunk_id": "c_gold",
    }
    return RagSample(**{**data, **kw})


def rag_runs(**retrievers: list[RagSample]) -> dict[str, str]:
    """rag runs (one per retriever) answering the same qa run."""
    qa = create_run("qa", name="qa")
    out = {}
    for label, samples in retrievers.items():
        run = create_run("rag", name=label, parents={"qa": qa.id})
        save_samples(run, samples)
        run.set_status("done")
        out[label] = run.id
    return out


def judge_input(prompt: str) -> dict:
    """The input object ragas put at the end of its prompt."""
    return json.loads(prompt.rsplit("\ninput: ", 1)[1].rsplit("\nOutput:", 1)[0])


def schema_of(prompt: str) -> str:
    """Which ragas output model the prompt asks for (its JSON-schema title)."""
    titles = re.findall(r'"title": "(\w+Output)"', prompt)
    return titles[-1] if titles else ""


def happy(prompt: str) -> str:
    """A judge with fixed, known verdicts for each ragas prompt."""
    kind, data = schema_of(prompt), judge_input(prompt)
    if kind == "StatementGeneratorOutput":
        return json.dumps({"statements": ["S1.", "S2."]})
    if kind == "NLIStatementOutput":
        verdicts = [
            {"statement": s, "reason": f"checked {s}", "verdict": int(i == 0)}
            for i, s in enumerate(data["statements"])
        ]
        return json.dumps({"statements": verdicts})
    if kind == "AnswerRelevanceOutput":
        return json.dumps({"question": QUESTION, "noncommittal": 0})
    if kind == "ContextPrecisionOutput":
        useful = int(data["context"] == GOLD)
        return json.dumps(
            {"reason": "it states the schedule" if useful else "unrelated", "verdict": useful}
        )
    if kind == "ContextRecallOutput":
        return json.dumps(
            {
                "classifications": [
                    {"statement": "A", "reason": "in passage", "attributed": 1},
                    {"statement": "B", "reason": "missing", "attributed": 0},
                    {"statement": "C", "reason": "in passage", "attributed": 1},
                ]
            }
        )
    if kind == "ClaimDecompositionOutput":
        claims = ["R1."] if data["response"] == REFERENCE else ["C1.", "C2."]
        return json.dumps({"claims": claims})
    raise AssertionError(f"unexpected judge prompt: {prompt[:200]}")


def judge_with(override=None, **kw):  # noqa: ANN001, ANN003, ANN201
    """A scripted judge LLM (ScriptedBackend replying per prompt) plus its backend."""

    def reply(messages):  # noqa: ANN001, ANN202
        prompt = messages[0]["content"]
        if override is not None:
            out = override(prompt, messages)
            if out is not None:
                return out
        return happy(prompt)

    backend = ScriptedBackend(reply)
    kw.setdefault("retry_base_delay_s", 0)
    kw.setdefault("use_cache", False)
    return LLM(backend, **kw), backend


@pytest.fixture
def embeddings():
    from core.rag.judges import SentenceTransformerEmbeddings

    return SentenceTransformerEmbeddings(FakeEncoder(), label="fake")


def cosine(a: str, b: str) -> float:
    from core.embeddings import encode_texts

    va, vb = encode_texts(FakeEncoder(), [a, b])
    return float(va @ vb)


def values(result, retriever: str = "base") -> dict[str, float]:  # noqa: ANN001
    rows = result.scores[result.scores["retriever"] == retriever]
    return {(r.sample_id, r.metric): r.value for r in rows.itertuples()}


# --------------------------------------------------------------------------- happy paths


def test_every_metric_scores_exactly_with_a_scripted_judge(embeddings):
    llm, _ = judge_with()
    runs = rag_runs(base=[sample("s1"), sample("s2", reference=None, contexts=(GOLD, OTHER))])
    run = evaluate_rag(runs, judge=llm, embeddings=embeddings)
    result = load_ragas_eval(run.id)
    got = values(result)
    expected_s1 = {
        "faithfulness": 0.5,  # 1 of 2 statements supported
        "answer_relevancy": 1.0,  # the judge's questions equal the question
        "context_precision": 0.5,  # useful passage at rank 2 of 2
        "context_recall": 2 / 3,
        "factual_correctness": 0.67,  # precision 1/2, recall 1/1 -> F1 2/3, rounded by ragas
        "semantic_similarity": cosine(RESPONSE, REFERENCE),
        "non_llm_context_precision_with_reference": 0.5,
        "non_llm_context_recall": 1.0,
        "id_based_context_precision": 0.5,
        "id_based_context_recall": 1.0,
    }
    for metric, value in expected_s1.items():
        assert got[("s1", metric)] == pytest.approx(value, abs=1e-6), metric
    assert got[("s2", "context_precision")] == pytest.approx(1.0)  # gold at rank 1
    assert got[("s2", "non_llm_context_precision_with_reference")] == pytest.approx(1.0)
    assert math.isnan(got[("s2", "factual_correctness")]) and math.isnan(
        got[("s2", "semantic_similarity")]
    )
    s2 = result.scores[(result.scores["sample_id"] == "s2")].set_index("metric")
    assert s2.loc["factual_correctness", "status"] == "skipped"
    assert s2.loc["context_recall", "reference_source"] == "gold_chunk"
    assert (
        result.scores.set_index(["sample_id", "metric"]).loc[
            ("s1", "context_recall"), "reference_source"
        ]
        == "answer"
    )
    summary = result.summary["retrievers"]["base"]
    assert summary["faithfulness"]["mean"] == pytest.approx(0.5)
    assert summary["faithfulness"]["n_ok"] == 2 and summary["faithfulness"]["n_failed"] == 0
    assert (
        summary["factual_correctness"]["n_ok"] == 1
        and summary["factual_correctness"]["n_skipped"] == 1
    )
    assert summary["context_precision"]["mean"] == pytest.approx(0.75)
    assert summary["context_precision"]["ci_low"] <= 0.75 <= summary["context_precision"]["ci_high"]
    assert load_run(run.id).manifest.summary["n_failed"] == 0


def test_judge_reasons_are_kept_per_score(embeddings):
    llm, _ = judge_with()
    run = evaluate_rag(
        rag_runs(base=[sample()]),
        judge=llm,
        embeddings=embeddings,
        config=RagasConfig(metrics=("faithfulness", "context_precision")),
    )
    scores = load_ragas_eval(run.id).scores.set_index("metric")
    assert scores.loc["faithfulness", "reason"] == "S1. → 1: checked S1. | S2. → 0: checked S2."
    assert scores.loc["context_precision", "reason"] == "unrelated | it states the schedule"


def test_judge_free_metrics_need_no_judge_and_no_llm_metric_runs_without_one():
    run = evaluate_rag(
        rag_runs(base=[sample()]),
        judge=None,
        embeddings=None,
        config=RagasConfig(metrics=tuple(m for m in NON_LLM_METRICS if m != "semantic_similarity")),
    )
    got = values(load_ragas_eval(run.id))
    assert got[("s1", "id_based_context_recall")] == 1.0
    assert got[("s1", "non_llm_context_precision_with_reference")] == pytest.approx(0.5)


def test_missing_judge_or_embeddings_is_a_clear_config_error(embeddings):
    runs = rag_runs(base=[sample()])
    with pytest.raises(ConfigError, match="need a judge LLM and none was given") as err:
        evaluate_rag(runs, judge=None, embeddings=embeddings)
    assert "nothing falls back to a cloud model" in str(err.value)
    llm, _ = judge_with()
    with pytest.raises(ConfigError, match="answer_relevancy, semantic_similarity need embeddings"):
        evaluate_rag(runs, judge=llm, embeddings=None)


# --------------------------------------------------------------------------- failures


def only(schema: str, reply):  # noqa: ANN001, ANN201
    """An override that answers `reply` (a value or an exception) for one ragas prompt kind."""
    return lambda prompt, messages: reply if schema_of(prompt) == schema else None


def test_malformed_json_is_counted_as_a_parse_failure_after_one_corrective_retry(embeddings):
    llm, backend = judge_with(only("NLIStatementOutput", "Sure! The verdicts are: yes, no"))
    runs = rag_runs(base=[sample("s1"), sample("s2")])
    run = evaluate_rag(
        runs, judge=llm, embeddings=embeddings, config=RagasConfig(metrics=("faithfulness",))
    )
    result = load_ragas_eval(run.id)
    entry = result.summary["retrievers"]["base"]["faithfulness"]
    assert entry["n_ok"] == 0 and entry["n_failed"] == 2 and entry["failures"] == {"parse": 2}
    assert entry["mean"] is None  # nothing succeeded: no average pretends otherwise
    assert result.scores["value"].isna().all() and set(result.scores["status"]) == {"failed"}
    nli_calls = [c for c in backend.calls if schema_of(c[0]["content"]) == "NLIStatementOutput"]
    assert len(nli_calls) == 4  # each judgement: the reply, then one corrective re-ask
    reasks = [c for c in nli_calls if c[-1]["content"].startswith("That reply was not valid JSON")]
    assert len(reasks) == 2 and all(len(c) == 3 for c in reasks)  # prompt, bad reply, re-ask
    assert summary_table(result.summary).loc[0, "failures"] == "parse: 2"


def test_schema_mismatch_is_counted_as_schema(embeddings):
    llm, _ = judge_with(
        only("ContextRecallOutput", json.dumps({"classifications": [{"statement": "x"}]}))
    )
    run = evaluate_rag(
        rag_runs(base=[sample()]),
        judge=llm,
        embeddings=embeddings,
        config=RagasConfig(metrics=("context_recall",), parse_retries=0),
    )
    entry = load_ragas_eval(run.id).summary["retrievers"]["base"]["context_recall"]
    assert entry["failures"] == {"schema": 1} and entry["n_failed"] == 1


def test_timeout_is_retried_then_counted_and_other_samples_still_average(embeddings):
    def timeout_on_s2_context(prompt, messages):  # noqa: ANN001, ANN202
        if (
            schema_of(prompt) == "ContextRecallOutput"
            and OTHER in judge_input(prompt)["context"].split("\n")[0]
        ):
            return LLMError(
                "The LLM server did not answer within 60 s.", kind="timeout", retryable=True
            )
        return None

    llm, backend = judge_with(timeout_on_s2_context, max_retries=2)
    runs = rag_runs(
        base=[sample("s1", contexts=(GOLD, OTHER)), sample("s2", contexts=(OTHER, GOLD))]
    )
    run = evaluate_rag(
        runs, judge=llm, embeddings=embeddings, config=RagasConfig(metrics=("context_recall",))
    )
    result = load_ragas_eval(run.id)
    entry = result.summary["retrievers"]["base"]["context_recall"]
    assert entry["n_ok"] == 1 and entry["n_failed"] == 1 and entry["failures"] == {"timeout": 1}
    assert entry["mean"] == pytest.approx(2 / 3)  # over the one success, with the failure shown
    failed = result.scores[result.scores["status"] == "failed"].iloc[0]
    assert (
        failed["sample_id"] == "s2"
        and failed["error"] == "timeout"
        and "did not answer" in failed["detail"]
    )
    assert llm.usage.retries == 2 and llm.usage.failures == Counter({"timeout": 1})
    assert len(backend.calls) == 1 + 3


def test_rate_limit_429_is_counted_as_rate_limit(embeddings):
    error = LLMError(
        "The LLM server is rate-limiting (HTTP 429).", kind="rate_limit", retryable=True
    )
    llm, _ = judge_with(only("ContextPrecisionOutput", error), max_retries=1)
    run = evaluate_rag(
        rag_runs(base=[sample()]),
        judge=llm,
        embeddings=embeddings,
        config=RagasConfig(metrics=("context_precision", "id_based_context_recall")),
    )
    summary = load_ragas_eval(run.id).summary["retrievers"]["base"]
    assert summary["context_precision"]["failures"] == {"rate_limit": 1}
    assert summary["id_based_context_recall"]["n_ok"] == 1  # other metrics unaffected


def test_answer_relevancy_asks_n_single_completions_cached_separately(tmp_path, embeddings):
    llm, backend = judge_with(cache_dir=tmp_path / "cache", use_cache=True)
    config = RagasConfig(metrics=("answer_relevancy",), strictness=3)
    runs = rag_runs(base=[sample()])
    first = evaluate_rag(runs, judge=llm, embeddings=embeddings, config=config)
    assert len(backend.calls) == 3  # three separate requests, none asking for n>1
    assert all(len(call) == 1 and call[0]["role"] == "user" for call in backend.calls)
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 3  # one cache entry per draw
    assert values(load_ragas_eval(first.id))[("s1", "answer_relevancy")] == pytest.approx(1.0)
    second = evaluate_rag(runs, judge=llm, embeddings=embeddings, config=config)
    assert len(backend.calls) == 3  # all three served from the cache
    usage = load_ragas_eval(second.id).usage["scoring"]["judge_by_metric"]["answer_relevancy"]
    assert usage == {"calls": 0, "cached": 3, "prompt_tokens": 0, "completion_tokens": 0}


def test_a_server_refusing_the_request_is_counted_as_refused(embeddings):
    error = LLMError(
        "The server rejected the request (HTTP 400).", found="'n' must be 1", kind="refused"
    )
    llm, backend = judge_with(only("AnswerRelevanceOutput", error), max_retries=3)
    run = evaluate_rag(
        rag_runs(base=[sample()]),
        judge=llm,
        embeddings=embeddings,
        config=RagasConfig(metrics=("answer_relevancy",)),
    )
    entry = load_ragas_eval(run.id).summary["retrievers"]["base"]["answer_relevancy"]
    assert entry["failures"] == {"refused": 1} and entry["n_failed"] == 1
    assert len(backend.calls) == 1  # a refusal is not retried


def test_nan_from_the_metric_is_a_failure_not_a_silent_gap(embeddings):
    llm, _ = judge_with(only("StatementGeneratorOutput", json.dumps({"statements": []})))
    run = evaluate_rag(
        rag_runs(base=[sample()]),
        judge=llm,
        embeddings=embeddings,
        config=RagasConfig(metrics=("faithfulness",)),
    )
    entry = load_ragas_eval(run.id).summary["retrievers"]["base"]["faithfulness"]
    assert entry["failures"] == {"nan": 1} and entry["n_ok"] == 0


def test_a_missing_answer_fails_answer_metrics_but_not_context_metrics(embeddings):
    llm, _ = judge_with()
    broken = sample(response="", error="HTTP 429", error_kind="rate_limit")
    run = evaluate_rag(
        rag_runs(base=[broken]),
        judge=llm,
        embeddings=embeddings,
        config=RagasConfig(metrics=("faithfulness", "context_recall")),
    )
    rows = load_ragas_eval(run.id).scores.set_index("metric")
    assert rows.loc["faithfulness", "error"] == "no_response"
    assert "rate_limit" in rows.loc["faithfulness", "detail"]
    assert rows.loc["context_recall", "value"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- retry, repeats, comparison


def test_retry_failed_rescores_only_the_failed_rows_into_a_merged_run(tmp_path, embeddings):
    cache = tmp_path / "cache"
    error = LLMError(
        "The LLM server is rate-limiting (HTTP 429).", kind="rate_limit", retryable=True
    )
    flaky, _ = judge_with(
        only("ContextRecallOutput", error), cache_dir=cache, use_cache=True, max_retries=0
    )
    runs = rag_runs(base=[sample("s1"), sample("s2")])
    config = RagasConfig(metrics=("faithfulness", "context_recall"))
    first = evaluate_rag(runs, judge=flaky, embeddings=embeddings, config=config)
    assert load_run(first.id).manifest.summary["n_failed"] == 2

    # No cache for the retry: s1 and s2 ask identical prompts, and with a cache the second could
    # be served from the first (or not, as the two concurrent jobs happen to race).
    healthy, backend = judge_with(cache_dir=cache, use_cache=False)
    second = retry_failed(first.id, judge=healthy, embeddings=embeddings)
    result = load_ragas_eval(second.id)
    assert [schema_of(c[0]["content"]) for c in backend.calls] == ["ContextRecallOutput"] * 2
    assert set(result.scores["status"]) == {"ok"} and len(result.scores) == 4
    assert result.summary["retrievers"]["base"]["context_recall"]["mean"] == pytest.approx(2 / 3)
    assert result.summary["retrievers"]["base"]["faithfulness"]["mean"] == pytest.approx(0.5)
    assert result.summary["n_rescored"] == 2
    assert list(result.scores["metric"]) == ["faithfulness", "context_recall"] * 2  # original order
    manifest = load_run(second.id).manifest
    assert manifest.parents["retry_of"] == first.id and manifest.parents["rag_base"] == runs["base"]
    assert manifest.summary["n_failed"] == 0


def test_repeats_use_new_sample_indices_and_report_the_spread(tmp_path, embeddings):
    draws = iter([[1, 1], [1, 0], [0, 0]])

    def varying(prompt, messages):  # noqa: ANN001, ANN202
        if schema_of(prompt) == "ContextRecallOutput":
            marks = next(draws)
            items = [
                {"statement": f"s{i}", "reason": "r", "attributed": a} for i, a in enumerate(marks)
            ]
            return json.dumps({"classifications": items})
        return None

    llm, backend = judge_with(
        varying, cache_dir=tmp_path / "cache", use_cache=True, max_concurrency=1
    )
    config = RagasConfig(metrics=("context_recall", "id_based_context_recall"), repeats=3)
    runs = rag_runs(base=[sample()])
    run = evaluate_rag(runs, judge=llm, embeddings=embeddings, config=config)
    result = load_ragas_eval(run.id)
    rep = result.summary["retrievers"]["base"]["context_recall"]["repeats"]
    assert rep["means"] == [1.0, 0.5, 0.0]
    assert rep["std"] == pytest.approx(0.5) and rep["min"] == 0.0 and rep["max"] == 1.0
    assert result.summary["retrievers"]["base"]["context_recall"]["mean"] == pytest.approx(0.5)
    assert (
        "repeats" not in result.summary["retrievers"]["base"]["id_based_context_recall"]
    )  # no judge
    assert len(result.scores) == 3 + 1
    assert len(backend.calls) == 3
    evaluate_rag(runs, judge=llm, embeddings=embeddings, config=config)
    assert len(backend.calls) == 3  # each repeat has its own cache entry


def test_base_vs_tuned_comparison_and_per_question_table(embeddings):
    llm, _ = judge_with()
    base = [
        sample("s1", contexts=(OTHER, GOLD)),
        sample("s2", contexts=(OTHER, GOLD)),
        sample("s3", contexts=(GOLD,)),
    ]
    tuned = [
        sample("s1", contexts=(GOLD, OTHER)),
        sample("s2", contexts=(GOLD,)),
        sample("s3", contexts=(OTHER,)),
    ]
    runs = rag_runs(base=base, tuned=tuned)
    run = evaluate_rag(
        runs,
        judge=llm,
        embeddings=embeddings,
        config=RagasConfig(metrics=("context_precision", "id_based_context_recall")),
    )
    result = load_ragas_eval(run.id)
    comp = result.summary["comparisons"]["tuned"]["context_precision"]
    # per question tuned - base: +0.5, +0.5, -1.0
    assert comp["n_pairs"] == 3 and comp["delta"] == pytest.approx(0.0, abs=1e-9)
    assert comp["n_better"] == 2 and comp["n_worse"] == 1
    table = per_question_table(result, flips={"s3": "lost"})
    assert list(table["sample_id"]) == ["s1", "s2", "s3"]
    assert list(table["tuned_worse"]) == [False, False, True]
    assert list(table["retrieval_flip"]) == ["", "", "lost"]
    assert table.loc[2, "tuned_contexts"] == OTHER and table.loc[2, "base_answer"] == RESPONSE
    assert table.loc[0, "tuned_context_precision"] == pytest.approx(1.0)
    assert "base_context_precision_reason" in table.columns


def test_rag_runs_of_different_qa_runs_are_refused(embeddings):
    a = rag_runs(base=[sample()])
    b = rag_runs(tuned=[sample()])
    with pytest.raises(LineageError, match="answer different qa runs"):
        evaluate_rag(
            {**a, **b},
            judge=None,
            embeddings=None,
            config=RagasConfig(metrics=("id_based_context_recall",)),
        )


def test_config_validates_metrics_and_repeats():
    with pytest.raises(ConfigError, match="Unknown RAGAS metric"):
        RagasConfig(metrics=("faithfullness",))
    with pytest.raises(ConfigError, match="Repeats must be between 1 and 20"):
        RagasConfig(repeats=0)
    assert set(LLM_METRICS) == {
        "faithfulness",
        "answer_relevancy",
        "context_precision",
        "context_recall",
        "factual_correctness",
    }
    assert RagasConfig.from_dict(RagasConfig(repeats=2).to_dict()).repeats == 2


def test_embeddings_adapter_batches_and_memoises():
    from core.rag.judges import SentenceTransformerEmbeddings

    encoder = FakeEncoder()
    emb = SentenceTransformerEmbeddings(encoder, dim=16)
    vectors = emb.embed_texts(["a b", "c d", "a b"])
    again = emb.embed_text("c d")
    assert len(vectors) == 3 and len(vectors[0]) == 16
    assert vectors[0] == vectors[2] and again == vectors[1]
    assert encoder.encoded == ["a b", "c d"] and emb.texts_embedded == 2
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="need a sentence-transformers model"):
        SentenceTransformerEmbeddings(None)


def test_ragas_telemetry_is_off_and_no_openai_client_is_built(embeddings, monkeypatch):
    import openai

    built = []
    monkeypatch.setattr(openai.OpenAI, "__init__", lambda self, *a, **k: built.append("sync"))
    monkeypatch.setattr(openai.AsyncOpenAI, "__init__", lambda self, *a, **k: built.append("async"))
    llm, _ = judge_with()
    evaluate_rag(rag_runs(base=[sample()]), judge=llm, embeddings=embeddings)
    from ragas._analytics import do_not_track

    assert do_not_track() is True
    assert built == []  # every judge call went through our LLM, never an OpenAI client
