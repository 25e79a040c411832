"""Fine-tuning throughput: the plain sentence-transformers trainer vs our optimised path.

    .venv/bin/python -m bench.finetune_speed --quick        # CPU smoke check: MiniLM shape, 3 steps
    .venv/bin/python -m bench.finetune_speed                # CUDA: 3 shapes x batch 32/128
    .venv/bin/python -m bench.finetune_speed --shapes bge-base --batches 128 --json out.json

What is measured: pairs/s of SentenceTransformerTrainer training MatryoshkaLoss(MNRL) (dims: the
native one then 512/256/128/64 below it) with NO_DUPLICATES batches, on BERT-shaped models with
random weights (BertConfig; the tokenizer is the packaged MiniLM's), for
- `plain`: the trainer as a user would set it up: bf16 on CUDA (fp32 on CPU), library defaults
  (transformers picks SDPA attention for BERT by itself; batches padded to their longest pair);
- `grouped`: plain + batches of similar length (a no-duplicates sampler that sorts each window of
  64 batches by length, then shuffles the batch order) + padding to a multiple of 8 + 4 dataloader
  workers (tokenisation off the training loop);
- `grouped+compile`: grouped + `torch_compile=True` (inductor, dynamic shapes), CUDA only by default.

Data: synthetic pairs of whole-word tokens, a query of 8-32 tokens and a passage of 30-160 tokens,
~113 tokens per pair on average (the model-card recipes' length), the same pairs for every path.
Timing: `--warmup` steps are run first and not timed (compilation, allocator warm-up); the timed
steps run between two CUDA synchronisations. pairs/s = batch x timed steps / seconds.
MFU = 6 x non-embedding parameters x real (non-padding) tokens per second / peak FLOP/s, the
usual estimate (embedding lookups and attention's seq^2 term left out). The peak defaults to
989e12 (H100/H200 SXM dense bf16); pass --peak-tflops for another chip. On CPU MFU is not
reported unless --peak-tflops is given.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.config import apply_offline_env

SHAPES: dict[str, dict[str, int]] = {
    "minilm": {"layers": 6, "hidden": 384, "heads": 12},  # all-MiniLM-L6-v2
    "bge-base": {"layers": 12, "hidden": 768, "heads": 12},  # bge-base-en-v1.5
    "arctic-l": {"layers": 24, "hidden": 1024, "heads": 16},  # snowflake-arctic-embed-l
}
PATHS = ("plain", "grouped", "grouped+compile")
H100_BF16_DENSE_TFLOPS = 989.0


@dataclass
class Result:
    shape: str
    path: str
    batch: int
    device: str
    precision: str
    attention: str
    pairs_per_s: float
    tokens_per_s: float  # real (non-padding) tokens
    padding_share: float  # padded positions / all positions
    mfu: float | None
    peak_mem_gib: float | None
    params_non_embedding: int
    timed_steps: int
    seconds: float


def make_texts(
    n_pairs: int, seed: int, vocab: list[str], scale: float = 1.0
) -> tuple[list[str], list[str]]:
    """Unique (query, passage) pairs of whole-word tokens; lengths vary like real data
    (query 8-32, passage 30-160 tokens: ~113 a pair), times `scale`."""
    rng = random.Random(seed)
    anchors, positives = [], []
    for i in range(n_pairs):
        q_len = max(2, round(rng.randint(8, 32) * scale))
        p_len = max(2, round(rng.randint(30, 160) * scale))
        # A numbered word first keeps every text unique (NO_DUPLICATES needs that).
        anchors.append(f"q{i} " + " ".join(rng.choices(vocab, k=q_len - 1)))
        positives.append(f"p{i} " + " ".join(rng.choices(vocab, k=p_len - 1)))
    return anchors, positives


def word_vocab(tokenizer_dir: Path) -> list[str]:
    """Whole-word, alphabetic entries of the WordPiece vocabulary (one token each)."""
    words = (tokenizer_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w for w in words[2000:] if w.isalpha() and w.isascii() and len(w) > 2][:8000]


def build_model(shape: str, folder: Path, device: str, seed: int):  # noqa: ANN201
    """A random-weight BERT of `shape`, saved with the MiniLM tokenizer, loaded with mean pooling."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel

    from core.embeddings import default_model_path

    spec = SHAPES[shape]
    if not (folder / "config.json").exists():
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=30522,
            hidden_size=spec["hidden"],
            num_hidden_layers=spec["layers"],
            num_attention_heads=spec["heads"],
            intermediate_size=4 * spec["hidden"],
            max_position_embeddings=512,
        )
        BertModel(config).save_pretrained(folder)
        src = default_model_path()
        for name in (
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt",
            "special_tokens_map.json",
        ):
            if (src / name).exists():
                shutil.copy(src / name, folder / name)
    transformer = Transformer(str(folder), max_seq_length=256)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device=device)


def non_embedding_params(model) -> int:  # noqa: ANN001
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def length_grouped_sampler(window: int = 64):  # noqa: ANN201
    """A batch-sampler class: no duplicate texts in a batch, batches of similar length."""
    import torch
    from sentence_transformers.base.sampler import DefaultBatchSampler

    class LengthGroupedNoDuplicatesBatchSampler(DefaultBatchSampler):
        def __init__(
            self,
            dataset,
            batch_size,
            drop_last,
            valid_label_columns=None,  # noqa: ANN001
            generator=None,
            seed=0,
        ) -> None:
            super().__init__(
                dataset,
                batch_size=batch_size,
                drop_last=drop_last,
                valid_label_columns=valid_label_columns,
                generator=generator,
                seed=seed,
            )
            columns = [c for c in dataset.column_names if c not in (valid_label_columns or [])]
            self.rows = [tuple(str(dataset[c][i]) for c in columns) for i in range(len(dataset))]
            # Characters of the longest text in a row: a cheap proxy for its padded token length.
            self.lengths = [max(len(t) for t in row) for row in self.rows]

        def __iter__(self):
            if self.generator is not None and self.seed is not None:
                self.generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.rows), generator=self.generator).tolist()
            span = window * self.batch_size
            batches: list[list[int]] = []
            carry: list[int] = []
            for start in range(0, len(order), span):
                block = sorted(carry + order[start : start + span], key=self.lengths.__getitem__)
                carry = []
                batch: list[int] = []
                seen: set[str] = set()
                for idx in block:
                    texts = set(self.rows[idx])
                    if texts & seen:
                        carry.append(idx)  # a duplicate text: try it in a later batch
                        continue
                    batch.append(idx)
                    seen |= texts
                    if len(batch) == self.batch_size:
                        batches.append(batch)
                        batch, seen = [], set()
                carry += batch
            while carry and not self.drop_last:
                batch, seen, rest = [], set(), []
                for idx in carry:
                    texts = set(self.rows[idx])
                    if texts & seen or len(batch) == self.batch_size:
                        rest.append(idx)
                    else:
                        batch.append(idx)
                        seen |= texts
                batches.append(batch)
                carry = rest
            shuffle = torch.randperm(len(batches), generator=self.generator).tolist()
            yield from (batches[i] for i in shuffle)

        def __len__(self) -> int:
            n = len(self.rows) / self.batch_size
            return math.floor(n) if self.drop_last else math.ceil(n)

    return LengthGroupedNoDuplicatesBatchSampler


def run_one(
    shape: str, path: str, batch: int, device: str, args: argparse.Namespace, workdir: Path
) -> Result:
    import torch
    from datasets import Dataset
    from sentence_transformers.sentence_transformer.losses import (
        MatryoshkaLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers import TrainerCallback

    from core.finetune.config import default_dims

    cuda = device.startswith("cuda")
    model = build_model(shape, workdir / shape, device, args.seed)
    if path != "plain":
        model[0].processing_kwargs = {"text": {"pad_to_multiple_of": 8}}
    native = model.get_embedding_dimension()
    steps = args.warmup + args.steps
    anchors, positives = make_texts(
        steps * batch + batch, args.seed, word_vocab(workdir / shape), args.length_scale
    )
    dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})
    loss = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), list(default_dims(native)))

    bf16 = cuda and torch.cuda.is_bf16_supported() and not args.fp32
    tokens = {"real": [], "padded": []}
    marks: dict[str, float] = {}

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):  # noqa: ANN001
            if state.global_step in (args.warmup, steps):
                if cuda:
                    torch.cuda.synchronize()
                marks[str(state.global_step)] = time.perf_counter()
                if state.global_step == args.warmup and cuda:
                    torch.cuda.reset_peak_memory_stats()

    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / "out"),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=2e-5,
        warmup_steps=0.1,
        lr_scheduler_type="cosine",
        bf16=bf16,
        tf32=True if cuda and torch.cuda.get_device_capability()[0] >= 8 else None,
        use_cpu=not cuda,
        batch_sampler=length_grouped_sampler() if path != "plain" else BatchSamplers.NO_DUPLICATES,
        dataloader_num_workers=args.workers if path != "plain" else 0,
        torch_compile=path.endswith("compile"),
        save_strategy="no",
        logging_steps=10_000,
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=[Timer()]
    )
    trainer.train()
    seconds = marks[str(steps)] - marks[str(args.warmup)]
    # Count tokens outside the timing: re-draw the same batches (same sampler, seed and epoch)
    # and collate them as training did.
    sampler = trainer.get_batch_sampler(
        dataset, batch, False, generator=torch.Generator(), seed=args.seed
    )
    for i, idx in enumerate(sampler):
        if i >= steps:
            break
        out = trainer.data_collator([dataset[j] for j in idx])
        for key, value in out.items():
            if key.endswith("attention_mask"):
                tokens["real"].append(int(value.sum()))
                tokens["padded"].append(int(value.numel()))
    # Tokens of the timed steps: two columns a step (anchor, positive).
    real = sum(tokens["real"][2 * args.warmup : 2 * steps])
    padded = sum(tokens["padded"][2 * args.warmup : 2 * steps])
    params = non_embedding_params(model)
    tokens_per_s = real / seconds
    peak = (
        args.peak_tflops * 1e12
        if args.peak_tflops
        else (H100_BF16_DENSE_TFLOPS * 1e12 if cuda else None)
    )
    auto_model = getattr(model[0], "auto_model", None) or getattr(model[0], "model", None)
    return Result(
        shape=shape,
        path=path,
        batch=batch,
        device=device,
        precision="bf16" if bf16 else "fp32",
        attention=str(getattr(getattr(auto_model, "config", None), "_attn_implementation", "?")),
        pairs_per_s=batch * args.steps / seconds,
        tokens_per_s=tokens_per_s,
        padding_share=1 - real / padded if padded else 0.0,
        mfu=6 * params * tokens_per_s / peak if peak else None,
        peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        params_non_embedding=params,
        timed_steps=args.steps,
        seconds=seconds,
    )


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke check: minilm, batch 8, 2+3 steps, short texts"
    )
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help="comma-separated: " + ", ".join(SHAPES)
    )
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--paths", default=None, help="comma-separated: " + ", ".join(PATHS))
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument(
        "--workers", type=int, default=4, help="dataloader workers of the optimised path"
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="peak dense TFLOP/s of the chip"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fp32", action="store_true", help="no bf16 even on CUDA")
    parser.add_argument("--length-scale", type=float, default=1.0, help="scale the text lengths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    apply_offline_env()

    import torch

    from core.embeddings import describe_device, select_device

    device = select_device(args.device)
    if args.quick:
        args.shapes, args.batches, args.steps, args.warmup = "minilm", "8", 3, 2
        args.length_scale = min(args.length_scale, 0.25)
        args.workers = min(args.workers, 2)
    paths = (
        args.paths.split(",")
        if args.paths
        else (list(PATHS) if device.startswith("cuda") else ["plain", "grouped"])
    )
    print(f"device: {describe_device(device)} · torch {torch.__version__}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        workdir = Path(tmp)
        for shape in args.shapes.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                plain_rate = None
                for path in paths:
                    try:
                        result = run_one(shape, path, batch, device, args, workdir)
                    except Exception as exc:  # noqa: BLE001 - one failing point must not hide the rest
                        print(
                            f"{shape:9s} b{batch:<4d} {path:16s} FAILED: {type(exc).__name__}: {exc}"[
                                :300
                            ]
                        )
                        continue
                    results.append(result)
                    if path == "plain":
                        plain_rate = result.pairs_per_s
                    speedup = f"x{result.pairs_per_s / plain_rate:.2f}" if plain_rate else ""
                    mfu = f"{result.mfu * 100:.1f}%" if result.mfu is not None else "n/a"
                    mem = f"{result.peak_mem_gib:.1f} GiB" if result.peak_mem_gib else ""
                    print(
                        f"{shape:9s} b{batch:<4d} {path:16s} {result.pairs_per_s:8.1f} pairs/s "
                        f"{speedup:6s} MFU {mfu:6s} padding {result.padding_share * 100:4.1f}% "
                        f"{result.precision} {result.attention} {mem}",
                        flush=True,
                    )
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


if __name__ == "__main__":
    main()
