"""A job's progress line names its stage once (issue 26: 'generating questions: generating
questions: 2/4', 'base (1/2) · answering: answering: 3/5')."""

from __future__ import annotations

from core.llm.client import LLM
from core.progress import labelled
from core.runs.folders import create_run
from core.runs.jobs import progress_writer, read_progress
from tests.support.scripted_llm import ScriptedBackend


def test_a_mapped_stage_is_named_once_and_counted_in_numbers():
    run = create_run("qa", name="progress")
    llm = LLM(ScriptedBackend(lambda messages: "ok"), use_cache=False)
    for on_progress in (progress_writer(run), labelled(progress_writer(run), "base (1/2)")):
        llm.map(lambda item: item, [1, 2, 3, 4], stage="answering", on_progress=on_progress)
    events = read_progress(run)
    phases = [e["message"] for e in events if e.get("event") == "phase"]
    assert phases and all(p.count("answering") == 1 for p in phases), phases
    assert "base (1/2) · answering" in phases
    logs = [e for e in events if e.get("event") == "log"]
    assert (logs[-1]["step"], logs[-1]["total_steps"]) == (4, 4)
