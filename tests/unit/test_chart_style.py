"""Charts read alike (issue 26, charts): one model keeps one colour on every chart, a hybrid
its dense model's with a pattern of its own, empty charts draw no axes, log axes name powers
of ten only."""

from __future__ import annotations

import pandas as pd

from core.charts.frontier import frontier_figure
from core.charts.retrieval import delta_bars_figure, metric_vs_dim_figure, tradeoff_figure
from core.charts.style import model_colors
from tests.support.eval_result import hand_made_result


def _colors(fig) -> dict[str, str]:
    out = {}
    for trace in fig.data:
        if trace.type == "bar":
            color = trace.marker.line.color
        else:
            color = trace.line.color or trace.marker.color
        if trace.name and isinstance(color, str) and color.startswith("#"):
            out.setdefault(trace.name.split(" · ")[0], color)
    return out


def test_a_model_keeps_its_colour_on_every_chart():
    result = hand_made_result()
    dims = _colors(metric_vs_dim_figure(result.metrics, "ndcg@10"))
    deltas = _colors(delta_bars_figure(result.deltas, "ndcg@10"))
    ship = _colors(frontier_figure(result.frontier, "ndcg@10"))
    assert dims["base"] == ship["base"] != dims["tuned"]
    assert dims["tuned"] == deltas["tuned"] == ship["tuned"]
    assert deltas["tuned + BM25 (RRF)"] == deltas["tuned"]  # the hybrid: its model's colour
    bars = {
        t.name: t.marker.pattern.shape for t in delta_bars_figure(result.deltas, "ndcg@10").data
    }
    assert bars == {"tuned": "", "tuned + BM25 (RRF)": "/", "tuned + BM25 (weighted)": "x"}


def test_colours_do_not_shift_with_the_models_a_chart_shows():
    every = model_colors(["base", "base + BM25 (RRF)", "tuned", "tuned + BM25 (RRF)"])
    some = model_colors(["base", "tuned"])
    assert every["tuned"] == some["tuned"] and every["base + BM25 (RRF)"] == every["base"]


def test_an_empty_chart_says_so_without_axes():
    for fig in (
        delta_bars_figure(hand_made_result().deltas.iloc[0:0], "ndcg@10"),
        frontier_figure(pd.DataFrame(), "ndcg@10"),
        tradeoff_figure(hand_made_result().metrics, pd.DataFrame(), "ndcg@10"),
    ):
        assert fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False
        assert fig.layout.annotations and fig.layout.annotations[0].text.startswith("No ")


def test_log_axes_name_powers_of_ten_only():
    assert frontier_figure(hand_made_result().frontier, "ndcg@10").layout.xaxis.dtick == 1


def test_a_star_only_ever_marks_a_gold_chunk():
    from core.evaluation.frontier import frontier_display

    shown = frontier_display(hand_made_result().frontier, 1000, "ndcg@10")
    assert "★" not in "".join(shown["frontier"]) and "on it" in set(shown["frontier"])
    figure = frontier_figure(hand_made_result().frontier, "ndcg@10")
    symbols = {str(t.marker.symbol) for t in figure.data if t.marker and t.marker.symbol}
    assert not any(s.startswith("star") for s in symbols), symbols  # the reference: a diamond


def test_the_matryoshka_panel_names_the_dims_once_so_no_labels_overlap():
    """Issue 26: every model's '384d', '256d' labels were drawn, on top of one another."""
    tradeoff = pd.DataFrame(
        [
            {"model": m, "dim": d, "bytes_per_vector": 4 * d, "latency_ms": d / 100}
            for m in ("base", "tuned")
            for d in (384, 256)
        ]
    )
    fig = tradeoff_figure(hand_made_result().metrics, tradeoff, "ndcg@10")
    modes = {(t.name, "text" in t.mode) for t in fig.data}
    assert modes == {("base", True), ("tuned", False)}


def test_a_fine_tunes_charts_say_what_they_wait_for_instead_of_empty_axes():
    """Seen while the base model was evaluated: both fine-tune charts drew axes from -1 to 4."""
    from core.charts.training import loss_figure, ndcg_figure
    from core.runs.jobs import JobStatus

    waiting = JobStatus(run_id="m", status="running", pid=1, alive=True)
    for fig in (loss_figure(waiting), ndcg_figure(waiting)):
        assert not fig.data and fig.layout.xaxis.visible is False
        assert fig.layout.annotations[0].text.split(":")[1].strip().startswith("shows")
    going = JobStatus(
        run_id="m",
        status="running",
        pid=1,
        alive=True,
        losses=[(1, 3.4), (2, 3.1)],
        evals=[{"epoch": 0, "ndcg@10": {"384": 0.8, "64": 0.6}}],
    )
    assert list(loss_figure(going).data[0].y) == [3.4, 3.1]
    assert [t.name for t in ndcg_figure(going).data] == ["dim 384", "dim 64"]


def test_a_fine_tune_stopped_after_one_step_still_draws_its_loss_point():
    """Browser tour: one logged step drawn in 'lines' mode showed nothing."""
    from core.charts.training import loss_figure
    from core.runs.jobs import JobStatus

    one = JobStatus(run_id="m", status="stopped", pid=None, alive=False, losses=[(1, 3.4)])
    assert "markers" in loss_figure(one).data[0].mode
    two = JobStatus(run_id="m", status="done", pid=None, alive=False, losses=[(1, 3.4), (2, 3)])
    assert "lines" in loss_figure(two).data[0].mode and "markers" in loss_figure(two).data[0].mode


def test_an_empty_chart_says_what_it_waits_for_once():
    """Browser tour: 'Training loss: shows from the first logged step' as title and as note."""
    from core.charts.training import loss_figure, ndcg_figure
    from core.runs.jobs import JobStatus

    waiting = JobStatus(run_id="m", status="running", pid=1, alive=True)
    for fig in (loss_figure(waiting), ndcg_figure(waiting), frontier_figure(pd.DataFrame(), "x")):
        note = fig.layout.annotations[0].text
        shown = [fig.layout.title.text or "", *(a.text for a in fig.layout.annotations)]
        assert sum(note in text for text in shown) == 1, shown


def test_the_validation_chart_counts_whole_epochs_from_zero():
    """Browser tour: with only epoch 0 (the base model) the axis ran from -1 to 1 in halves."""
    from core.charts.training import ndcg_figure
    from core.runs.jobs import JobStatus

    base_only = JobStatus(
        run_id="m",
        status="running",
        pid=1,
        alive=True,
        evals=[{"epoch": 0, "ndcg@10": {"64": 0.6}}],
    )
    axis = ndcg_figure(base_only).layout.xaxis
    assert axis.range[0] == 0 and axis.range[1] >= 1
    assert axis.dtick == 1 and axis.tick0 == 0
    later = JobStatus(
        run_id="m",
        status="done",
        pid=1,
        alive=False,
        evals=[{"epoch": e, "ndcg@10": {"64": 0.6 + e / 10}} for e in (0, 1, 2, 3)],
    )
    assert list(ndcg_figure(later).layout.xaxis.range) == [0, 3]
