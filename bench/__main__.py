"""The benchmark set in one command: the machine, then one table.

    .venv/bin/python -m bench --quick       # ~3 minutes on 2 CPU cores: small inputs, single runs
    .venv/bin/python -m bench               # bigger inputs, best of several runs
    .venv/bin/python -m bench --only llm,pages --json bench/out/latest.json

Rows (each section is its own module, runnable alone as `python -m bench.<name>`):
- ingest: PDF pages/s parsed + chunked (bench.ingest), the 73-page sample PDF;
- encode: passages/s encoded by all-MiniLM-L6-v2 per device (bench.encode_speed);
- finetune: fine-tune pairs/s and MFU (bench.finetune_speed; its quick CPU mode here, the GPU
  figures come from running it on a machine with a CUDA GPU);
- eval: per-dimension retrieval evaluation, ours vs sentence-transformers' SequentialEvaluator
  (bench.eval_speed), with a check that every metric is identical;
- llm: LLM stage speed-up at concurrency 1/4/8 against a fixed-latency loopback server
  (bench.llm_concurrency);
- pages: cold and warm render time of every page with AppTest (bench.page_render).

One failing section prints its error in its row; the others still run. Timings on a shared
machine move with its load, so the load average is printed with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import apply_offline_env

Row = dict[str, str]
SECTIONS = ("ingest", "encode", "finetune", "eval", "llm", "pages")
NEEDS_DEVICE = "needs a CUDA GPU (none here)"


def row(benchmark: str, setting: str, result: str, note: str = "") -> Row:
    return {"benchmark": benchmark, "setting": setting, "result": result, "note": note}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, load, torch and its device."""
    import torch

    from core.embeddings import describe_device, select_device

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    device = select_device("auto")
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in load],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": describe_device(device),
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------- sections


def bench_ingest(quick: bool, ctx: dict[str, Any]) -> list[Row]:
    from bench.ingest import measure
    from core.documents.chunking import ChunkingConfig
    from core.documents.stage import SAMPLE_PDF

    config = ChunkingConfig()
    data = SAMPLE_PDF.read_bytes()
    measure(SAMPLE_PDF.name, data, config, 1)  # warm-up: imports and caches
    repeat = 1 if quick else 3
    r = measure(SAMPLE_PDF.name, data, config, repeat)
    return [
        row(
            "PDF parse + chunk",
            f"{SAMPLE_PDF.name}, {r['pages']} pages, recursive {config.chunk_size}/{config.chunk_overlap}",
            f"{r['pages/s']} pages/s",
            f"parse {r['parse s']} s + chunk {r['chunk s']} s, {r['chunks']} chunks; best of {repeat}",
        )
    ]


def bench_encode(quick: bool, ctx: dict[str, Any]) -> list[Row]:
    from bench.encode_speed import devices_available, measure_encode, sample_passages
    from core.embeddings import ModelSpec, load_model

    passages = sample_passages(64 if quick else 256)
    repeat = 1 if quick else 2
    rows = []
    for device in devices_available():
        model = (
            ctx["minilm"]
            if device == "cpu" and "minilm" in ctx
            else load_model(ModelSpec(), device=device)
        )
        if device == "cpu":
            ctx["minilm"] = model
        r = measure_encode(device, passages, 32, repeat, model)
        rows.append(
            row(
                f"encode passages ({device})",
                f"all-MiniLM-L6-v2, {len(passages)} x ~100 words, batch 32",
                f"{r['passages/s']:.1f} passages/s",
                f"{r['threads']} torch threads; best of {repeat}"
                if device == "cpu"
                else f"best of {repeat}",
            )
        )
    if "cuda" not in devices_available():
        rows.append(row("encode passages (cuda)", "all-MiniLM-L6-v2, batch 32", "-", NEEDS_DEVICE))
    return rows


def bench_finetune(quick: bool, ctx: dict[str, Any]) -> list[Row]:
    import importlib.util

    if importlib.util.find_spec("bench.finetune_speed") is None:
        return [row("fine-tune", "-", "-", "bench/finetune_speed.py is missing")]
    import torch

    from bench.finetune_speed import main as finetune_main

    rows = []
    # Quick: the plain trainer only (the grouped path spawns dataloader workers, slow to start).
    argv = ["--quick", "--device", "cpu", *(["--paths", "plain"] if quick else [])]
    with contextlib.redirect_stdout(io.StringIO()):
        results = finetune_main(argv)
    for r in results:
        rows.append(
            row(
                f"fine-tune ({r.device}, {r.path})",
                f"MiniLM-shaped BERT, MatryoshkaLoss(MNRL), batch {r.batch}, {r.timed_steps} timed steps, "
                "short texts",
                f"{r.pairs_per_s:.1f} pairs/s",
                f"smoke figure (few steps); MFU n/a on CPU (no peak FLOP/s); {r.precision}, "
                f"padding {r.padding_share:.0%}",
            )
        )
    if not results:
        rows.append(
            row(
                "fine-tune (cpu)",
                "quick mode",
                "failed",
                "see python -m bench.finetune_speed --quick",
            )
        )
    if torch.cuda.is_available():
        with contextlib.redirect_stdout(io.StringIO()):
            gpu = finetune_main(["--shapes", "minilm,bge-base", "--batches", "128", "--steps", "20",
                                 "--warmup", "5"])  # fmt: skip
        for r in gpu:
            rows.append(
                row(
                    f"fine-tune ({r.device}, {r.path})",
                    f"{r.shape}-shaped BERT, batch {r.batch}, {r.precision}",
                    f"{r.pairs_per_s:.0f} pairs/s",
                    f"MFU {r.mfu:.1%}" if r.mfu is not None else "",
                )
            )
    else:
        rows.append(
            row(
                "fine-tune (cuda)",
                "MiniLM / bge-base / arctic-l shapes, batch 32/128",
                "pairs/s, MFU",
                NEEDS_DEVICE + ": python -m bench.finetune_speed",
            )  # fmt: skip
        )
    return rows


def bench_eval(quick: bool, ctx: dict[str, Any]) -> list[Row]:
    from bench.eval_speed import DIMS, build_data, run_ours, run_st
    from core.embeddings import ModelSpec, load_model, native_dim
    from core.evaluation.metrics import metric_names

    model = ctx.get("minilm") or load_model(ModelSpec(), device="cpu")
    ctx["minilm"] = model
    chunks, queries = build_data(full=False)
    dims = tuple(d for d in DIMS if d <= native_dim(model))
    model.encode(list(chunks.values())[:32], batch_size=32)  # warm-up
    repeat = 1 if quick else 2
    seconds, cpu, results = {}, {}, {}
    for name, fn in (("ours", run_ours), ("st", run_st)):
        seconds[name] = cpu[name] = float("inf")
        for _ in range(repeat):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):
                results[name] = fn(model, chunks, queries, dims)
            seconds[name] = min(seconds[name], time.perf_counter() - wall0)
            cpu[name] = min(cpu[name], time.process_time() - cpu0)
    diff = max(
        abs(results["ours"][d][m] - results["st"][d][m]) for d in dims for m in metric_names()
    )
    setting = f"{len(chunks)} chunks, {len(queries)} queries, dims {'/'.join(map(str, dims))}, cpu"
    return [
        row("per-dim eval: ours", setting, f"{seconds['ours']:.2f} s",
            "encode once, truncate per dim"),
        row("per-dim eval: ST SequentialEvaluator", setting, f"{seconds['st']:.2f} s",
            "re-encodes for every dim (truncate_dim)"),
        row("per-dim eval: speed-up", setting,
            f"{seconds['st'] / seconds['ours']:.1f}x wall, {cpu['st'] / cpu['ours']:.1f}x cpu",
            f"metrics identical: {diff <= 1e-9} (max |diff| {diff:.1e}); best of {repeat}"),
    ]  # fmt: skip


def bench_llm(quick: bool, ctx: dict[str, Any]) -> list[Row]:
    from bench.llm_concurrency import measure

    levels = (1, 4, 8) if quick else (1, 4, 8, 16)
    rows = []
    for r in measure(levels, 32, 0.1):
        rows.append(
            row(
                f"LLM stage, concurrency {r['concurrency']}",
                f"{r['requests']} requests, {r['latency ms']} ms loopback latency",
                f"{r['speed-up']:.2f}x ({r['req/s']:.1f} req/s)",
                f"ideal {r['ideal']:.0f}x; {r['seconds']:.2f} s; max {r['max in flight']} in flight",
            )
        )
    return rows


def bench_pages(quick: bool, ctx: dict[str, Any]) -> list[Row]:
    from bench.page_render import measure

    first, results = measure(with_sample=not quick, repeat=1 if quick else 3)
    data = "sample corpus + QA set" if not quick else "empty data folder"
    rows = [
        row("page render: first run", "entrypoint, Python imports included", f"{first:.2f} s", data)
    ]
    for r in results:
        rows.append(
            row(
                f"page render: {r['page']}",
                f"AppTest, {data}",
                f"cold {r['cold s']:.2f} s / warm {r['warm s']:.2f} s",
                f"ERROR {r['error']}" if r["error"] else "cold = caches cleared; warm = rerun",
            )
        )
    return rows


RUNNERS: dict[str, Callable[[bool, dict[str, Any]], list[Row]]] = {
    "ingest": bench_ingest,
    "encode": bench_encode,
    "finetune": bench_finetune,
    "eval": bench_eval,
    "llm": bench_llm,
    "pages": bench_pages,
}


# --------------------------------------------------------------------------- output


def format_table(rows: list[Row]) -> str:
    """A Markdown table (readable in a terminal, pasteable into the README)."""
    headers = ["benchmark", "setting", "result", "note"]
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headers]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for r in rows:
        lines.append(
            "| " + " | ".join(r[h].ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
        )
    return "\n".join(lines)


def describe_machine(info: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.1f}" for x in info["load_average"])
    return (
        f"machine: {info['cpu']} · {info['cpu_count']} CPU cores (load average {load}) · "
        f"torch {info['torch']} ({info['torch_threads']} threads) · device {info['device']} · "
        f"Python {info['python']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small inputs, single runs (~3 min)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--json", type=Path, default=None, help="also write machine + rows here")
    args = parser.parse_args(argv)
    apply_offline_env()
    os.environ["RAGBENCH_EMBEDDING_CACHE"] = "0"  # time the work, not the embedding cache
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in RUNNERS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; use some of {', '.join(SECTIONS)}")

    started = time.perf_counter()
    info = machine_info()
    print(describe_machine(info), flush=True)
    rows: list[Row] = []
    ctx: dict[str, Any] = {}
    for name in sections:
        t0 = time.perf_counter()
        try:
            rows += RUNNERS[name](args.quick, ctx)
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            rows.append(row(name, "-", "failed", f"{type(exc).__name__}: {str(exc)[:160]}"))
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    total = time.perf_counter() - started
    print()
    print(format_table(rows))
    print(f"\n{'quick' if args.quick else 'full'} run, {total:.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"machine": info, "rows": rows, "seconds": total}, indent=2)
        )
    return 1 if any(r["result"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
