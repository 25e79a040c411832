"""`ragbench crossfit` as a user runs it: a plan first, then K real fine-tunes of a tiny BERT on CPU,
printing JSON with `retrieval_eval_run` like `eval-retrieval`, every question scored once; and the
loop file's [crossfit] section read into the same configuration."""

from __future__ import annotations

import json
import tomllib

import pytest

from core.evaluation.results import load_retrieval_eval
from core.questions.dataset import load_qa
from core.runs.folders import load_run
from tests.integration.test_cli import ROOT, run_cli
from tests.support.finetune_data import make_qa_run, make_tiny_model

pytestmark = pytest.mark.slow


def test_the_cli_plans_then_scores_every_question_with_the_model_that_never_saw_it(
    tmp_path, data_root
):
    tiny = make_tiny_model(tmp_path / "bert")
    _, qa = make_qa_run(n_chunks=18, seed=3)
    n_items = len(load_qa(qa))
    recipe = [
        "--base", f"local:{tiny}", "--matryoshka-dims", "32", "16", "--epochs", "1",
        "--batch-size", "8", "--max-seq-length", "32",
    ]  # fmt: skip

    plan = run_cli("crossfit", qa.id, "--folds", "3", *recipe, "--plan", data=data_root)
    assert plan.returncode == 0, plan.stderr[-3000:]
    planned = json.loads(plan.stdout.strip().splitlines()[-1])
    assert planned["stage"] == "crossfit-plan"
    assert planned["cost"]["folds"] == 3 and planned["cost"]["steps"] > 0
    assert f"3-fold cross-fit tests all {n_items} questions" in planned["plan"]["text"]
    assert not [r for r in (data_root / "runs").iterdir() if r.name.startswith("crossfit-")]

    result = run_cli("crossfit", qa.id, "--folds", "3", *recipe, "--bm25", data=data_root)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["stage"] == "crossfit" and out["split"] is None
    saved = load_retrieval_eval(out["retrieval_eval_run"])
    assert saved.n_queries == n_items  # every accepted question, not a test split
    crossfit = load_run(out["crossfit_run"])
    assert crossfit.manifest.status == "done"
    assert [v["text"] for v in out["verdicts"]] == [h.text for h in saved.headlines()]
    assert "What this judges: the recipe" in out["verdicts"][0]["text"]
    folds = {row["fold"] for row in out["fold_spread"]}
    assert folds == {1, 2, 3}
    per_dim = {}
    for row in out["fold_spread"]:
        per_dim[row["dim"]] = per_dim.get(row["dim"], 0) + row["questions"]
    assert per_dim == {32: n_items, 16: n_items}


def test_the_loop_files_crossfit_section_is_the_finetune_recipe_on_k_folds():
    from core.cli.crossfit import config_from_options

    loop = tomllib.loads((ROOT / "data/sample/loop.toml").read_text())
    section = loop["crossfit"]
    assert section["enabled"] is False  # 5 fine-tunes: a user turns it on
    config = config_from_options(
        "qa-x", loop["finetune"].get("options", {}), "default", section["options"]
    )
    assert config.folds == section["options"]["folds"] == 5
    assert config.include_bm25 is True
    assert config.recipe.epochs == loop["finetune"]["options"]["epochs"]
