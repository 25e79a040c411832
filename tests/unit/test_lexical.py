"""BM25 and the hybrids beside the question asked (issue 26, items 1 to 3): the headline leads with
tuned vs base, a hybrid that is BM25 alone is named so, BM25 alone has its line, what to ship says
when a lexical or hybrid retriever scored higher, and no figure reads 'inf'."""

from __future__ import annotations

import copy

import pandas as pd

from core.evaluation.frontier import frontier_display, recommend
from tests.support.eval_result import hand_made_result


def test_the_headline_leads_with_tuned_vs_base_and_names_a_degenerate_hybrid():
    result = hand_made_result()
    headlines = result.headlines()
    assert [h.model for h in headlines] == [
        "tuned",
        "tuned + BM25 (RRF)",
        "tuned + BM25 (weighted)",
    ]
    assert headlines[0].text.startswith("No significant difference between tuned and base")
    weighted = headlines[2].text
    assert weighted.startswith(
        "tuned + BM25 (weighted) is BM25 alone: its weight, 0.0 × dense + 1.0 × BM25, was "
        "chosen on the validation split. tuned + BM25 (weighted) is significantly better"
    )
    assert "BM25 alone" not in headlines[1].text  # RRF fuses both


def test_bm25_alone_gets_its_own_line_beside_the_base():
    line = hand_made_result().bm25_line()
    assert line.startswith(
        "BM25 alone (lexical, no embedding): ndcg@10 0.928 [0.878, 0.978] against "
        "0.795 [0.745, 0.845] for base at 384d, +0.133 (higher;"
    )


def test_what_to_ship_says_a_lexical_retriever_scored_higher_and_by_how_much():
    rec = hand_made_result().recommendation()
    assert rec is not None and rec.caution
    assert rec.text.endswith(rec.caution) and rec.caution not in rec.advice
    assert rec.caution.startswith(
        "A lexical or hybrid retriever scored higher than every cell above: BM25 has ndcg@10 "
        "0.928 [0.878, 0.978], +0.1"
    )
    assert "so consider shipping it (no vectors, only a BM25 index" in rec.caution
    assert rec.to_dict()["caution"] == rec.caution


def test_no_caution_when_the_embedding_cells_score_highest():
    result = hand_made_result()
    lexical = result.metrics["kind"].isin(["bm25", "hybrid"])
    result.metrics.loc[lexical, "value"] = 0.5
    rec = result.recommendation()
    assert rec is not None and rec.caution == "" and rec.advice == rec.text


def test_one_question_never_prints_inf():
    """With one cluster no bound exists: the sentence and the table say so in words."""
    frontier = hand_made_result(n_questions=1).frontier
    rec = recommend(frontier, "ndcg@10", 1)
    assert "inf" not in rec.text
    assert "no bound on how much worse it could be (fewer than 2 clusters" in rec.text
    shown = frontier_display(frontier, 1000, "ndcg@10")
    assert "inf" not in " ".join(shown["could be worse by"])
    assert (shown["could be worse by"].iloc[1:] == "no bound").all()
    assert isinstance(shown, pd.DataFrame)


def test_a_hybrid_that_is_not_significantly_better_is_not_pushed():
    result = hand_made_result()
    bm25 = result.metrics["kind"] == "bm25"
    result.metrics.loc[bm25, "value"] = 0.5  # the hybrids lead now
    result.deltas["significant"] = False
    result.deltas["verdict"] = "not significant (max-T p=0.4)"
    caution = result.recommendation().caution
    assert caution.startswith(
        "A lexical or hybrid retriever scored higher than every cell above: tuned + BM25 "
        "(weighted) at 384d (tuned + BM25 (weighted) is BM25 alone"
    )
    assert caution.endswith(
        "its paired test is not significant (max-T p=0.4); that difference could be chance: "
        "weigh it against the cells above."
    )


def test_the_deltas_table_and_sentences_lead_with_the_tuned_model_as_the_headline_does():
    from core.report.tables import delta_sentences, deltas_table

    result = hand_made_result()
    assert list(dict.fromkeys(deltas_table(result)["model"]))[0] == "tuned"
    sentences = delta_sentences(result)
    assert sentences[0].startswith("tuned vs base at 384d")
    assert sentences[-1].startswith("tuned + BM25 (weighted) vs base at 384d")


def _hybrids_of_the_base(result):
    """The hand-made result with its hybrids fused from the base ('base + BM25 (…)'), as an
    evaluation of a base and a tuned model makes them: their labels sort before 'tuned', so an
    order by name (or by the stage's rows) puts them first."""
    names = {f"tuned + BM25 ({f})": f"base + BM25 ({f})" for f in ("RRF", "weighted")}
    result.models = copy.deepcopy(result.models)  # the support module's list stays as it is
    for m in result.models:
        if m["label"] in names:
            m["label"], m["ref"] = names[m["label"]], "base"
    for frame in (result.metrics, result.deltas):
        frame["model"] = frame["model"].replace(names)
    return result


def test_the_report_s_verdict_leads_with_tuned_vs_base_then_the_hybrids_then_bm25_alone():
    """Issue 26, item 2 ('same order in the report'): the report's verdict, its sentences and
    its deltas table put tuned vs base first, name the weighted hybrid BM25 alone, and give
    BM25 alone a line of its own."""
    from core.report.tables import delta_sentences, deltas_table

    result = _hybrids_of_the_base(hand_made_result())
    assert delta_sentences(result)[0].startswith("tuned vs base at 384d")
    assert list(dict.fromkeys(deltas_table(result)["model"])) == [
        "tuned",
        "base + BM25 (RRF)",
        "base + BM25 (weighted)",
    ]
    from core.report.html import _verdict_html  # the report's verdict section

    html = _verdict_html(result)
    tuned = html.index("No significant difference between tuned and base")
    rrf = html.index("base + BM25 (RRF) is significantly better")
    weighted = html.index("base + BM25 (weighted) is BM25 alone: its weight, 0.0 × dense")
    bm25 = html.index("BM25 alone (lexical, no embedding): ndcg@10 0.928")
    assert tuned < rrf < weighted < bm25


def test_the_reports_summary_and_flips_lead_with_tuned_vs_base_and_cut_at_a_word():
    """The report's top summary carries BM25 alone's line as the page does; its flipped questions
    list tuned vs base before the hybrids, and cut each passage at a whole word."""
    from types import SimpleNamespace

    from core.report.html import _flips_html, _verdict_summary

    result = _hybrids_of_the_base(hand_made_result())
    summary = _verdict_summary(SimpleNamespace(retrieval_results={"r": result}, ragas_results={}))
    assert "BM25 alone (lexical, no embedding): ndcg@10 0.928" in summary
    passage = "word " * 40  # 200 characters: cut at 160, on a word
    row = {
        "query_id": "q1",
        "question": "What is it?",
        "gold_ids": ["c1"],
        "base_rank": 7,
        "model_rank": 1,
        "base_top": ["c2"],
        "model_top": ["c1"],
    }
    comparisons = [
        {"model": label, "dim": 384, "k": 5, "gained": [row], "lost": []}
        for label in ("base + BM25 (RRF)", "base + BM25 (weighted)", "tuned")
    ]
    result.flips = {"comparisons": comparisons, "texts": {"c1": passage, "c2": passage}}
    html = _flips_html(result)
    assert html.index("tuned vs") < html.index("base + BM25 (RRF) vs")
    assert "word word …" in html and "wor …" not in html and "wo<" not in html


def test_the_copied_questions_caution_is_said_once_not_on_every_headline():
    """The tour found the same caution paragraph after each of 5 headlines (10 in the report)."""
    result = hand_made_result()
    result.query_sources = {"heading": 30, "cloze": 10}
    texts = [h.text for h in result.headlines()]
    assert len(texts) >= 3
    said = [t for t in texts if "Caution: 40 of the 40 questions are headings" in t]
    assert said == [texts[0]]  # after the first (tuned vs base) headline only
