"""FinetuneConfig: defaults from the recipes, validation messages verbatim, guard-rail warnings."""

from __future__ import annotations

import pytest

from core.embeddings import ModelSpec
from core.errors import ConfigError, InputError
from core.finetune.config import (
    FinetuneConfig,
    check_config,
    choose_precision,
    default_dims,
    describe_base_model,
    resolve_dims,
)
from core.finetune.evaluator import parse_eval_metrics
from core.finetune.trainer import describe_failure


def test_defaults_follow_the_recipes():
    cfg = FinetuneConfig()
    assert (cfg.learning_rate, cfg.warmup_ratio, cfg.scheduler) == (2e-5, 0.1, "cosine")
    assert (cfg.epochs, cfg.batch_size, cfg.weight_decay) == (3, 32, 0.01)
    assert cfg.loss == "mnrl" and cfg.hard_negatives is False
    assert (cfg.precision, cfg.device) == ("auto", "auto")


def test_default_dims_native_first_then_ladder_below_native():
    assert default_dims(384) == (384, 256, 128, 64)
    assert default_dims(768) == (768, 512, 256, 128, 64)
    assert default_dims(1024) == (1024, 512, 256, 128, 64)


def test_round_trip_through_dict_and_update():
    cfg = FinetuneConfig(
        qa_run_id="qa-1",
        base_model=ModelSpec("local", "/m"),
        matryoshka_dims=(384, 64),
        dim_weights=(2, 1),
    )
    data = cfg.to_dict()
    assert data["base_model"] == {"source": "local", "ref": "/m"}
    assert data["matryoshka_dims"] == [384, 64]
    back = FinetuneConfig.from_dict(data)
    assert back == cfg
    changed = cfg.update(epochs=5)
    assert changed.epochs == 5 and cfg.epochs == 3


def test_unknown_setting_guesses_the_name():
    with pytest.raises(ConfigError) as err:
        FinetuneConfig.from_dict({"epoch": 3})
    assert str(err.value) == "Unknown fine-tune setting 'epoch'. Fix: did you mean 'epochs'."
    assert FinetuneConfig.from_dict({"epoch": 3}, ignore_extra=True).epochs == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"epochs": 0},
            "Epochs must be between 1 and 100; got 0. Fix: use 1 to 10 (3 is the default).",
        ),
        (
            {"batch_size": 1},
            "Batch size 1 leaves no in-batch negatives for MNRL. "
            "Fix: use at least 2 (32 or more is recommended).",
        ),
        (
            {"learning_rate": 0.5},
            "Learning rate 0.5 is outside (0, 0.01]. Fix: use something like 2e-5 (the recipes' default).",
        ),
        (
            {"warmup_ratio": 1.0},
            "Warmup ratio 1 must be in [0, 1). Fix: use 0.1 (10% of the steps).",
        ),
        ({"scheduler": "cosin"}, "Unknown scheduler 'cosin'. Fix: did you mean 'cosine'."),
        ({"loss": "mnrl2"}, "Unknown loss 'mnrl2'. Fix: did you mean 'mnrl'."),
        ({"precision": "fp8"}, "Unknown precision 'fp8'. Fix: use one of auto, bf16, fp16, fp32."),
        ({"weight_decay": -0.1}, "Weight decay -0.1 must be in [0, 1). Fix: use 0.01."),
        (
            {"max_seq_length": 4},
            "Max sequence length 4 must be between 8 and 8192. "
            "Fix: leave it empty to keep the model's own, or use e.g. 256.",
        ),
        (
            {"matryoshka_dims": (384, 0)},
            "Matryoshka dims must be positive; got [384, 0]. Fix: use e.g. 384, 256, 128, 64.",
        ),
        (
            {"matryoshka_dims": (384, 384)},
            "Matryoshka dims repeat a value: [384, 384]. Fix: list each dimension once.",
        ),
        (
            {"matryoshka_dims": (384, 64), "dim_weights": (1.0,)},
            "1 dim weights for 2 dims. Fix: give one weight per dimension, or none for weight 1 everywhere.",
        ),
        (
            {"hard_negatives": True, "negatives_range_min": 10, "negatives_range_max": 10},
            "Hard-negative range 10..10 holds fewer than 1 candidates. "
            "Fix: raise the range end or lower the number of negatives.",
        ),
    ],
)
def test_validation_messages_name_the_fix(changes, message):
    with pytest.raises(ConfigError) as err:
        FinetuneConfig(**changes)
    assert str(err.value) == message


def test_resolve_dims_fills_defaults_sorts_and_drops_above_native():
    assert resolve_dims(FinetuneConfig(), 384) == ((384, 256, 128, 64), (1.0, 1.0, 1.0, 1.0))
    cfg = FinetuneConfig(matryoshka_dims=(64, 768, 384), dim_weights=(3, 1, 2))
    assert resolve_dims(cfg, 384) == ((384, 64), (2.0, 3.0))
    with pytest.raises(ConfigError, match="No Matryoshka dim is at or below"):
        resolve_dims(FinetuneConfig(matryoshka_dims=(768,)), 384)


def test_guard_rails_flag_each_dubious_choice():
    cfg = FinetuneConfig(matryoshka_dims=(128, 256, 512), batch_size=8)
    warnings = check_config(cfg, native_dim=384, query_prompt="query: ", n_train=20)
    text = "\n".join(warnings)
    assert (
        "The model's native dimension 384 is not in the Matryoshka dims [128, 256, 512]: "
        "the full-size embedding would not be trained. Add 384." in warnings
    )
    assert "Dims [512] are above the model's native dimension 384" in text
    assert "are not in descending order; they are trained as [512, 256, 128]" in text
    assert "Batch size 8 gives each question only 7 in-batch negatives" in text
    assert "Only 20 training questions" in text
    assert "The base model's query prompt 'query: ' is put before every question" in text


def test_sound_config_has_no_warnings():
    cfg = FinetuneConfig(matryoshka_dims=default_dims(384))
    assert check_config(cfg, native_dim=384, query_prompt=None, n_train=5000) == []


def test_cached_mnrl_mini_batch_not_below_batch_is_flagged():
    cfg = FinetuneConfig(loss="cached_mnrl", batch_size=32, mini_batch_size=32)
    assert any("cached_mnrl then saves no memory" in w for w in check_config(cfg))


@pytest.mark.parametrize(
    ("requested", "device", "bf16", "expected"),
    [
        ("auto", "cuda", True, "bf16"),
        ("auto", "cuda", False, "fp16"),
        ("auto", "cpu", False, "fp32"),
        ("auto", "mps", False, "fp32"),
        ("fp32", "cuda", True, "fp32"),
    ],
)
def test_precision_auto(requested, device, bf16, expected):
    assert choose_precision(requested, device, bf16_supported=bf16) == expected


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ConfigError) as err:
        choose_precision("fp16", "cpu")
    assert (
        str(err.value)
        == "fp16 mixed precision needs CUDA; this run is on cpu. Fix: use auto or fp32."
    )


def test_parse_eval_metrics_maps_st_keys_to_ours():
    metrics = {
        "eval_dim_384_cosine_ndcg@10": 0.5,
        "eval_dim_384_cosine_accuracy@5": 0.75,
        "eval_dim_64_cosine_map@100": 0.25,
        "eval_sequential_score": 0.1,
        "epoch": 1.0,
    }
    assert parse_eval_metrics(metrics) == {
        384: {"ndcg@10": 0.5, "hit_rate@5": 0.75},
        64: {"map@100": 0.25},
    }


def test_describe_failure_gives_the_oom_hint():
    class OutOfMemoryError(RuntimeError):
        pass

    message, hint = describe_failure(
        OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    )
    assert message == "Out of GPU memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert hint == "lower the batch size or use cached_mnrl"
    message, hint = describe_failure(InputError("No questions.", fix="add some"))
    assert (message, hint) == ("No questions. Fix: add some.", "add some")


def test_describe_base_model_reads_the_packaged_minilm_without_loading_it():
    info = describe_base_model(ModelSpec())
    assert info.native_dim == 384
    assert info.query_prompt is None
    assert describe_base_model(ModelSpec("local", "/no/such/folder")).native_dim is None
