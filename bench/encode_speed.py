"""Passages per second encoded by the offline all-MiniLM-L6-v2, per device.

    .venv/bin/python -m bench.encode_speed                  # 256 passages on CPU (and CUDA if present)
    .venv/bin/python -m bench.encode_speed --passages 2048 --batch-sizes 16,32,64,128
    .venv/bin/python -m bench.encode_speed --device cuda --fp16

Passages are ~100-word windows of the sample PDF's text (the size of a default chunk), encoded
through core.embeddings.encode_texts exactly as indexing does (L2-normalised float32). The model
is loaded and warmed up first; figures are steady state, best of `--repeat`.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from typing import Any

from core.config import SAMPLE_DIR, apply_offline_env


def sample_passages(n: int, words: int = 100) -> list[str]:
    """`n` passages of `words` words cut from the sample PDF (cycled when it runs out)."""
    import pymupdf

    with pymupdf.open(SAMPLE_DIR / "debian-faq.en.pdf") as doc:
        tokens = re.sub(r"\s+", " ", " ".join(page.get_text() for page in doc)).split()
    passages = [" ".join(tokens[i : i + words]) for i in range(0, len(tokens) - words, words)]
    return [passages[i % len(passages)] for i in range(n)]


def devices_available() -> list[str]:
    """cpu, plus cuda when a GPU is visible."""
    import torch

    return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def measure_encode(
    device: str,
    passages: list[str],
    batch_size: int = 32,
    repeat: int = 1,
    model: Any = None,
    fp16: bool = False,
) -> dict[str, Any]:
    """Best-of-`repeat` encoding time of `passages` on `device` (model loaded unless given)."""
    import torch

    from core.embeddings import ModelSpec, encode_texts, load_model

    model = model if model is not None else load_model(ModelSpec(), device=device)
    if fp16:
        model.half()
    encode_texts(
        model, passages[: max(batch_size, 16)], batch_size=batch_size, cache=None
    )  # warm-up
    best = float("inf")
    for _ in range(max(1, repeat)):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        emb = encode_texts(model, passages, batch_size=batch_size, cache=None)  # (n, 384)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return {
        "device": device + (" fp16" if fp16 else ""),
        "passages": len(passages),
        "batch": batch_size,
        "dim": int(emb.shape[1]),
        "seconds": best,
        "passages/s": len(passages) / best,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--batch-sizes", default="32", help="comma-separated batch sizes")
    parser.add_argument("--device", default="", help="cpu or cuda (default: every device present)")
    parser.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    apply_offline_env()

    passages = sample_passages(args.passages)
    devices = [args.device] if args.device else devices_available()
    print(f"all-MiniLM-L6-v2, {len(passages)} passages of ~100 words, {os.cpu_count()} CPU cores")
    print(f"{'device':<10} {'batch':>5} {'seconds':>8} {'passages/s':>11}")
    for device in devices:
        from core.embeddings import ModelSpec, load_model

        model = load_model(ModelSpec(), device=device)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            row = measure_encode(
                device, passages, batch, args.repeat, model, args.fp16 and device != "cpu"
            )
            print(
                f"{row['device']:<10} {batch:>5} {row['seconds']:>8.2f} {row['passages/s']:>11.1f}"
            )


if __name__ == "__main__":
    main()
