"""`ragbench finetune` explains its options, has the page's hard negatives, loss and dims, and
prints one readable line per validation, not the trainer's log dictionaries (issue 26)."""

from __future__ import annotations

import pytest

from core.cli import commands, main
from core.cli.output import Output, Printer


def test_help_explains_every_option_and_has_the_page_s_settings(capsys):
    assert main(["finetune", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--dims", "--loss", "--hard-negatives", "--num-negatives", "--mini-batch-size"):
        assert option in text
    assert "MatryoshkaLoss over MultipleNegativesRankingLoss" in text
    assert "passes over the training pairs (default 3)" in text
    assert "the question set (qa run) to train on" in text


def test_the_new_options_reach_the_fine_tune_config(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        commands, "finetune", lambda ctx, qa, options, base: seen.update(options, qa=qa)
    )
    argv = ["finetune", "qa-1", "--dims", "384", "128", "--loss", "cached_mnrl"]
    argv += ["--mini-batch-size", "8", "--hard-negatives", "--num-negatives", "2"]
    assert main(argv) == 0
    assert seen == {
        "qa": "qa-1",
        "matryoshka_dims": (384, 128),
        "loss": "cached_mnrl",
        "mini_batch_size": 8,
        "hard_negatives": True,
        "num_negatives": 2,
    }


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            {
                "event": "eval",
                "phase": "base",
                "epoch": 0,
                "step": 0,
                "ndcg@10": {"128": 0.5, "384": 0.61},
            },
            "[finetune] base model (step 0): validation ndcg@10 384d 0.610, 128d 0.500",
        ),
        (
            {"event": "eval", "phase": "epoch", "epoch": 1.0, "step": 15, "ndcg@10": {"384": 0.7}},
            "[finetune] epoch 1 (step 15): validation ndcg@10 384d 0.700",
        ),
        ({"event": "log", "step": 3, "loss": 1.2}, None),
    ],
)
def test_one_line_per_validation(capsys, event, line):
    ctx = commands.Context(Printer(False), Output("json", False))
    commands.epoch_line(ctx, event)
    err = capsys.readouterr().err.strip()
    assert err == (line or "")
