"""Cold and warm render times of every page, with Streamlit's AppTest (no browser, no server).

    .venv/bin/python -m bench.page_render                 # every page, empty (temporary) data folder
    .venv/bin/python -m bench.page_render --with-sample   # after building the sample corpus + QA set
    .venv/bin/python -m bench.page_render --repeat 3      # warm = best of 3 reruns

cold: the page's first run in a fresh AppTest right after clearing st.cache_resource and
st.cache_data (what a user waits for on the first visit after a restart, minus process start and
imports); warm: the next rerun of the same session (what every click costs). Python's imports are
paid once, by a first throwaway run of the entrypoint, and reported apart. The entrypoint runs
through a one-line wrapper file, because AppTest re-runs the current page instead of the
entrypoint when the main script sits beside a pages/ folder (see tests/app/conftest.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "streamlit_app.py"
PAGES = (
    "home.py",
    "documents.py",
    "questions.py",
    "finetune.py",
    "retrieval_eval.py",
    "rag_eval.py",
    "runs.py",
)


def write_wrapper(folder: Path) -> Path:
    """A script that runs the real entrypoint (AppTest's pages/ quirk, see the module doc)."""
    wrapper = folder / "app_entry.py"
    wrapper.write_text(
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"runpy.run_path({str(APP)!r}, run_name='__main__')\n"
    )
    return wrapper


def build_sample_runs() -> None:
    """The sample corpus and its hand-written QA set, so pages render with something to show."""
    from core.documents.stage import ingest_sample_corpus

    corpus = ingest_sample_corpus()
    try:
        from core.questions.sample import load_sample_qa

        load_sample_qa(corpus.run.id)
    except Exception as exc:  # noqa: BLE001 - the QA set is optional for a render benchmark
        print(f"(sample QA set not loaded: {type(exc).__name__}: {exc})")


def render(wrapper: Path, page: str, repeat: int = 1, timeout_s: float = 180) -> dict[str, Any]:
    """Cold and warm seconds of one page (warm: best of `repeat` reruns)."""
    import streamlit as st
    from streamlit import logger as st_logger
    from streamlit.testing.v1 import AppTest

    # AppTest runs without a server, and Streamlit warns about it on every run.
    st_logger.set_log_level("error")
    st.cache_resource.clear()
    st.cache_data.clear()
    app = AppTest.from_file(str(wrapper), default_timeout=timeout_s)
    if page != "home.py":
        app.switch_page(str(ROOT / "pages" / page))
    start = time.perf_counter()
    app.run()
    cold = time.perf_counter() - start
    warm = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        app.run()
        warm = min(warm, time.perf_counter() - start)
    errors = [str(e.value)[:200] for e in app.exception]
    return {
        "page": page.removesuffix(".py"),
        "cold s": cold,
        "warm s": warm,
        "error": errors[0] if errors else "",
        "title": app.title[0].value if len(app.title) else "",
    }


def measure(
    pages: tuple[str, ...] = PAGES, with_sample: bool = False, repeat: int = 1
) -> tuple[float, list[dict[str, Any]]]:
    """(seconds of the first, import-paying run; one row per page). Always in a temporary data
    folder, so the sample runs built here never land in a real one."""
    previous = os.environ.get("RAGBENCH_DATA_DIR")
    with tempfile.TemporaryDirectory(prefix="ragbench-render-") as tmp:
        os.environ["RAGBENCH_DATA_DIR"] = str(Path(tmp) / "data")
        try:
            from core.config import apply_offline_env

            apply_offline_env()
            if with_sample:
                build_sample_runs()
            wrapper = write_wrapper(Path(tmp))
            start = time.perf_counter()
            render(wrapper, "home.py")  # pays Python's imports once
            first = time.perf_counter() - start
            rows = [render(wrapper, page, repeat) for page in pages]
        finally:
            if previous is None:
                os.environ.pop("RAGBENCH_DATA_DIR", None)
            else:
                os.environ["RAGBENCH_DATA_DIR"] = previous
    return first, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-sample", action="store_true", help="build the sample runs first")
    parser.add_argument("--repeat", type=int, default=1, help="warm reruns; the best counts")
    parser.add_argument("--pages", default=",".join(p.removesuffix(".py") for p in PAGES))
    args = parser.parse_args()
    pages = tuple(f"{p}.py" for p in args.pages.split(","))
    first, rows = measure(pages, args.with_sample, args.repeat)
    print(
        f"first run of the entrypoint (imports included): {first:.2f} s; {os.cpu_count()} CPU cores"
    )
    print(f"{'page':<16} {'cold s':>7} {'warm s':>7}  error")
    for r in rows:
        print(f"{r['page']:<16} {r['cold s']:>7.2f} {r['warm s']:>7.2f}  {r['error']}")


if __name__ == "__main__":
    main()
