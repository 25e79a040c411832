"""Cross-fitting for real on CPU with a tiny BERT: folds by cluster, fold models that never train
on their own fold, every question scored once, a stop that resumes at the next fold."""

from __future__ import annotations

import pytest

from core.crossfit.config import CrossfitConfig
from core.crossfit.folds import deal_folds, fold_items
from core.crossfit.stage import create_crossfit_run, crossfit_state, run_crossfit
from core.embeddings import ModelSpec
from core.errors import InputError, StoppedError
from core.evaluation.results import load_retrieval_eval
from core.finetune.config import FinetuneConfig
from core.finetune.model_card import read_model_card
from core.questions.dataset import QAItem, load_qa
from core.questions.leakage import check_no_leak
from core.runs.folders import load_run
from tests.support.finetune_data import make_qa_run, make_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert")


def recipe(tiny_model) -> FinetuneConfig:
    return FinetuneConfig(
        base_model=ModelSpec("local", str(tiny_model)),
        matryoshka_dims=(32, 16),
        epochs=1,
        batch_size=8,
        max_seq_length=32,
        eval_each_epoch=False,
        device="cpu",
    )


def test_folds_are_whole_clusters_balanced_by_questions():
    items = [
        QAItem(id=f"q{n}", question=f"Question {n}?", chunk_id=f"c{n // 3}", linked_chunk_ids=[])
        for n in range(30)  # 10 chunks, 3 questions each: 10 clusters of 3
    ]
    items.append(QAItem(id="x", question="Linked?", chunk_id="c99", linked_chunk_ids=["c0"]))
    folds = deal_folds(items, 4, seed=1)
    by_chunk: dict[str, set[int]] = {}
    for item, fold in zip(items, folds, strict=True):
        for chunk in item.split_chunk_ids:
            by_chunk.setdefault(chunk, set()).add(fold)
    assert all(len(f) == 1 for f in by_chunk.values())  # no chunk in two folds
    sizes = [folds.count(f) for f in range(4)]
    assert max(sizes) - min(sizes) <= 4 and sum(sizes) == 31
    assert folds == deal_folds(items, 4, seed=1)  # seeded
    assert folds != deal_folds(items, 4, seed=2)
    fold_set = fold_items(items, folds, 0, 0.15, seed=1)
    assert {i.split for i, f in zip(fold_set, folds, strict=True) if f == 0} == {"test"}
    assert {i.split for i, f in zip(fold_set, folds, strict=True) if f != 0} == {
        "train",
        "validation",
    }
    check_no_leak(fold_set)


def test_too_few_clusters_for_the_folds_is_refused_before_any_run():
    _, qa = make_qa_run(n_chunks=6, seed=3)
    with pytest.raises(InputError, match="too few clusters for 5 folds") as info:
        create_crossfit_run(CrossfitConfig(qa_run_id=qa.id, folds=5))
    assert "use at most 3 folds" in str(info.value)
    assert [r.kind for r in _all_runs()] == ["qa", "corpus"] or len(_all_runs()) == 2


def _all_runs():
    from core.runs.folders import list_runs

    return list_runs()


@pytest.mark.slow
def test_every_question_is_scored_by_the_fold_model_that_never_saw_it(tiny_model):
    _, qa = make_qa_run(n_chunks=24, seed=5)
    items = load_qa(qa)
    config = CrossfitConfig(
        qa_run_id=qa.id,
        folds=3,
        recipe=recipe(tiny_model),
        include_bm25=True,
        final_model=True,
        n_resamples=200,
        n_permutations=500,
    )
    run = create_crossfit_run(config)
    calls = {"n": 0}

    def stop_after_the_first_fold() -> bool:
        calls["n"] += 1
        return bool(crossfit_state(run.id)["models"][0]) and calls["n"] > 1

    with pytest.raises(StoppedError):
        run_crossfit(run.id, should_stop=stop_after_the_first_fold)
    stopped = load_run(run.id)
    state = crossfit_state(run.id)
    assert stopped.manifest.status == "stopped"
    first = state["models"][0]
    assert load_run(first).manifest.status == "done" and state["models"][1:] == [None, None]

    result = run_crossfit(run.id)  # resumes at fold 2
    state = crossfit_state(run.id)
    assert state["models"][0] == first  # the finished fold is kept, not trained again
    assert load_run(run.id).manifest.status == "done"
    folds = [int(state["folds"][i.id]) for i in items]
    for fold, (set_id, model_id) in enumerate(
        zip(state["fold_sets"], state["models"], strict=True)
    ):
        model = load_run(model_id)
        assert model.manifest.parents["qa"] == set_id
        assert model.manifest.parents["crossfit"] == run.id
        fold_set = load_qa(set_id)
        trained = {c for i in fold_set if i.split != "test" for c in i.split_chunk_ids}
        own = {c for i, f in zip(items, folds, strict=True) if f == fold for c in i.split_chunk_ids}
        assert not trained & own  # a fold model never trains on a chunk of its own fold
        assert {i.id for i in fold_set if i.split == "test"} == {
            i.id for i, f in zip(items, folds, strict=True) if f == fold
        }
    saved = load_retrieval_eval(result.run_id)
    assert saved.n_queries == len(items) == 72 and saved.split is None
    assert saved.n_clusters == 24  # the catalogue's three questions per chunk are one cluster
    label = "tuned recipe (3-fold cross-fit)"
    assert set(saved.deltas["model"]) == {label}
    (headline,) = saved.headlines()
    assert headline.model == label and "questions in 24 clusters" in headline.text
    assert "What this judges: the recipe" in headline.text
    spread = saved.fold_spread()
    assert sorted(spread["fold"].unique()) == [1, 2, 3] and set(spread["dim"]) == {32, 16}
    assert spread.groupby("dim")["questions"].sum().tolist() == [72, 72]
    # the per-fold means recombine into the all-question delta
    at32 = spread[spread["dim"] == 32]
    overall = (at32["delta"] * at32["questions"]).sum() / 72
    row = saved.deltas[(saved.deltas["metric"] == "ndcg@10") & (saved.deltas["dim"] == 32)]
    assert row["value"].iloc[0] - row["base_value"].iloc[0] == pytest.approx(overall, abs=1e-9)
    assert "BM25" in set(saved.metrics["model"])
    # the model to ship: the recipe on every question, marked, and its card says what was judged
    final = load_run(state["final_model"])
    assert final.manifest.status == "done" and final.manifest.summary["crossfit_role"] == "final"
    assert {i.split for i in load_qa(final.manifest.parents["qa"])} == {"train", "validation"}
    card = read_model_card(final)
    assert "Cross-fitted result of its recipe" in card and headline.text in card
    # the report shows the fold spread beside the verdict
    from core.report.export import build_report

    page = build_report([result.run_id]).html
    assert "per fold (each fold model on the questions it never saw)" in page


def test_the_plan_says_what_each_protocol_detects_and_the_cost_from_the_recipe():
    import numpy as np

    from core.crossfit.plan import estimate_cost, plan_from_scores

    _, qa = make_qa_run(n_chunks=40, seed=7)
    items = load_qa(qa)
    scores = np.random.default_rng(0).random(len(items))
    plan = plan_from_scores(items, scores, "ndcg@10", folds=5, n_dims=4, basis="Assumption: x.")
    test = [i for i in items if i.split == "test"]
    assert (plan.n_questions, plan.n_clusters) == (120, 40)
    assert plan.test_questions == len(test) and plan.test_clusters == len(test) // 3
    # more clusters, a smaller detectable difference
    assert plan.crossfit_detectable < plan.split_detectable
    assert plan.level == 0.05 / 4
    assert plan.text().startswith(f"A split evaluation tests {len(test)} questions in")
    config = CrossfitConfig(
        qa_run_id=qa.id, folds=4, recipe=FinetuneConfig(epochs=2, batch_size=16)
    )
    cost = estimate_cost(config)
    pairs = round(120 * 3 / 4 * 0.85)
    assert cost.pairs_per_fold == pairs and cost.steps == 4 * 2 * -(-pairs // 16)
    assert cost.seconds is None and "shows once the first fold has run" in cost.text()
