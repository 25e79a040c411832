"""The user's corpus, question set and model carry across pages (issue 26, item 3): a page shows
the run the session picked or made last, not the newest one; and an evaluation on a split too
small for any statistic is refused, a small one asked about, before it starts."""

from __future__ import annotations

import pytest

from tests.app.conftest import page_path
from tests.support.faq import faq_corpus, faq_items, faq_qa


@pytest.fixture
def two_sets():
    """A corpus with a 12-question set (the user's) and a newer 1-question set (the newest)."""
    items = faq_items(14)
    corpus = faq_corpus("faq", items)
    mine = faq_qa(corpus, "mine: 12 questions", items[:12])
    newest = faq_qa(corpus, "newest: 1 question", items[12:13])
    return corpus, mine, newest


def _open(app, page: str, **state):
    app.run()
    for key, value in state.items():
        app.session_state[key] = value
    app.switch_page(page_path(page)).run()
    assert not app.exception, app.exception
    return app


@pytest.mark.parametrize(
    ("page", "key"),
    [("retrieval_eval.py", "reval_qa"), ("finetune.py", "ft_qa"), ("rag_eval.py", "rag_qa")],
)
def test_a_page_shows_the_question_set_the_user_works_on_not_the_newest(app, two_sets, page, key):
    _, mine, _ = two_sets
    _open(app, page, current_qa=mine.id)
    assert app.selectbox(key=key).value == mine.id


def test_a_question_set_picked_on_one_page_is_the_one_the_next_page_shows(app, two_sets):
    _, mine, newest = two_sets
    _open(app, "finetune.py")
    assert app.selectbox(key="ft_qa").value == newest.id  # nothing chosen yet: the newest
    app.selectbox(key="ft_qa").select(mine.id).run()
    for page, key in (("retrieval_eval.py", "reval_qa"), ("rag_eval.py", "rag_qa")):
        app.switch_page(page_path(page)).run()
        assert not app.exception, app.exception
        assert app.selectbox(key=key).value == mine.id, page
    # The Retrieval eval page holds a second question-set picker (the cross-fit's): the one the
    # user changes is the one carried on.
    app.switch_page(page_path("retrieval_eval.py")).run()
    app.selectbox(key="reval_qa").select(newest.id).run()
    assert app.selectbox(key="reval_cf_qa").value == mine.id
    app.switch_page(page_path("finetune.py")).run()
    assert app.selectbox(key="ft_qa").value == newest.id


def test_a_question_set_of_the_current_corpus_comes_before_another_corpus_s(app, two_sets):
    corpus, _, newest = two_sets
    other = faq_corpus("other", faq_items(3))
    faq_qa(other, "other corpus's set", faq_items(3))  # the newest of all
    _open(app, "retrieval_eval.py", current_corpus=corpus.id)
    assert app.selectbox(key="reval_qa").value == newest.id  # the newest of the current corpus


def test_a_split_without_two_clusters_is_refused_before_any_run(app, two_sets):
    _, _, newest = two_sets
    _open(app, "retrieval_eval.py", current_qa=newest.id)
    assert app.selectbox(key="reval_qa").value == newest.id
    errors = " ".join(e.value for e in app.error)
    assert "holds 1 question: no interval, test or bound can be computed" in errors
    assert app.button(key="reval_run").disabled


def test_a_small_split_is_asked_about_before_it_runs(app, two_sets):
    _, mine, _ = two_sets
    _open(app, "retrieval_eval.py", current_qa=mine.id)
    warnings = " ".join(w.value for w in app.warning)
    assert "holds only 12 questions (fewer than 30)" in warnings
    assert app.button(key="reval_run").disabled
    app.checkbox(key=f"reval_few_{mine.id}_test").check().run()
    assert not app.button(key="reval_run").disabled


def test_the_model_the_user_works_on_is_the_one_the_evaluation_pages_preselect(app, two_sets):
    """The model carries too: a newer model run does not push the session's own aside."""
    from core.runs.folders import create_run

    _, mine, _ = two_sets
    models = [create_run("model", name=n, parents={"qa": mine.id}) for n in ("mine", "newer")]
    for run in models:
        run.set_status("done")
    _open(app, "retrieval_eval.py", current_qa=mine.id, current_model=models[0].id)
    assert app.multiselect(key=f"reval_models_{mine.id}").value == [models[0].id]
    app.switch_page(page_path("rag_eval.py")).run()
    assert not app.exception, app.exception
    assert app.selectbox(key=f"rag_tuned_{mine.id}").value == models[0].id


def test_a_stopped_fine_tune_that_saved_no_model_is_never_preselected(app, two_sets):
    """After a fine-tune stopped before training (no model saved) the evaluation pages offer the
    finished model, not the empty run (an evaluation with it could only fail)."""
    from core.runs.folders import create_run

    _, mine, _ = two_sets
    done = create_run("model", name="tuned", parents={"qa": mine.id})
    done.set_status("done")
    empty = create_run("model", name="stop-test", parents={"qa": mine.id})
    empty.set_status("stopped")
    _open(app, "retrieval_eval.py", current_qa=mine.id, current_model=empty.id)
    picker = app.multiselect(key=f"reval_models_{mine.id}")
    assert picker.value == [done.id] and empty.id not in picker.options
    app.switch_page(page_path("rag_eval.py")).run()
    assert not app.exception, app.exception
    assert app.selectbox(key=f"rag_tuned_{mine.id}").value == done.id


def test_a_model_picked_on_fine_tune_brings_its_question_set_to_the_evaluation_pages(app, two_sets):
    """The second tour: a model of an older question set picked under Fine-tune's Model run
    left the newest set current, so Retrieval eval offered no tuned model at all."""
    from core.runs.folders import create_run

    _, mine, newest = two_sets
    model = create_run("model", name="mine", parents={"qa": mine.id})
    model.set_status("done")
    create_run("model", name="newer", parents={"qa": newest.id}).set_status("done")
    _open(app, "finetune.py", current_qa=newest.id)
    assert app.selectbox(key="ft_run_id").value != model.id
    app.selectbox(key="ft_run_id").set_value(model.id).run()  # the user picks that model
    assert not app.exception, app.exception
    app.switch_page(page_path("retrieval_eval.py")).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="reval_qa").value == mine.id
    assert app.multiselect(key=f"reval_models_{mine.id}").value == [model.id]
