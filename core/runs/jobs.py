"""Background jobs: a long stage runs as a detached subprocess that writes to its run folder.

How it works:
1. `start_job(run)` launches `python -m <module> <run_id>` in a new session (so closing the browser
   tab, or restarting Streamlit, does not kill it), with stdout and stderr appended to
   `run.path / "job.log"`, and records the pid (and the process's start time, so a recycled pid is
   never mistaken for the job) in the manifest summary.
2. The job appends one JSON object a line to `progress.jsonl` and sets the manifest status itself
   (`done`, `failed` or `stopped`).
3. `request_stop(run)` writes a `STOP` file; the job checks it every step and stops cleanly.
4. `job_status(run)` reads the manifest and `progress.jsonl`. A manifest that still says `running`
   while its process is gone (killed, out of memory) is marked failed: the job process died.

Everything is on disk, so any page (or a second browser) can read a job's state at any time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import REPO_ROOT, apply_offline_env
from core.errors import RunError
from core.progress import ProgressCallback, ProgressEvent, StopCheck
from core.runs.folders import Run, load_run

JOB_LOG = "job.log"
STOP_FILE = "STOP"
PROGRESS_FILE = "progress.jsonl"
DIED_MESSAGE = (
    "The job process died without reporting an end (it was killed, ran out of memory, "
    "or the machine restarted)."
)
NO_PID_AFTER_S = 120.0  # a job that has not recorded its pid by then never started
DIED_HINT = "see job.log in the run folder for its last lines; resume from the last checkpoint"


def _run_of(run: Run | str) -> Run:
    return load_run(run) if isinstance(run, str) else run


def _reap(proc: subprocess.Popen) -> None:
    """Wait for the child in a daemon thread so a finished job never lingers as a zombie."""
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()


def process_start_time(pid: int) -> float | None:
    """The start time of process `pid` (seconds since the epoch), or None when it is gone."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - psutil missing, no such process or access denied
        return None


def is_process_alive(pid: int | None, started: float | None = None) -> bool:
    """Whether `pid` runs (and is not a zombie); with `started`, whether it is still that process."""
    if not pid:
        return False
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with accelerate
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if started is not None and abs(proc.create_time() - started) > 1.0:
            return False  # the pid was recycled by another process
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def prepare_job_process() -> None:
    """What a job process does first, before any Hugging Face import: the offline environment
    (nothing is looked up on the hub), and timed log lines on stderr, which is job.log."""
    import logging

    apply_offline_env()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def job_command(
    run_id: str, module: str = "core.finetune.job", args: tuple[str, ...] = ()
) -> list[str]:
    """The command line that runs a job module for one run."""
    return [sys.executable, "-m", module, run_id, *args]


def start_job(
    run: Run | str,
    module: str = "core.finetune.job",
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> int:
    """Launch `python -m <module> <run_id> [args]` detached; record the pid; return it.

    The job inherits the environment plus `RAGBENCH_DATA_DIR` pointing at this run's data folder,
    so it finds the same runs whatever its working directory.
    """
    run = _run_of(run)
    if run.manifest.status == "running" and is_process_alive(
        run.manifest.summary.get("pid"), run.manifest.summary.get("pid_started")
    ):
        raise RunError(
            f"Run {run.id} already has a running job (pid {run.manifest.summary.get('pid')}).",
            fix="stop it first or wait for it to finish",
        )
    from core.runs.actor import actor_env, require
    from core.runs.audit import record

    require("run", f"start a job for {run.id}")
    run.artifact(STOP_FILE).unlink(missing_ok=True)
    # The job acts for the user who started it (the runs it makes record them).
    child_env = {**os.environ, **actor_env(), **(env or {})}
    child_env["RAGBENCH_DATA_DIR"] = str(run.path.parent.parent)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    # The repo root on the path, so `-m core.<module>` resolves from any working directory.
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    # Running before the launch (pid unknown yet), so a job that fails at once cannot have its
    # `failed` overwritten by a late `running` from here.
    run.set_status(
        "running", error="", hint="", pid=None, job_module=module, job_started_at=time.time()
    )
    log_path = run.artifact(JOB_LOG)
    with log_path.open("ab") as log:
        log.write(f"\n=== job started {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                job_command(run.id, module, args),
                cwd=REPO_ROOT,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:  # never leave a run `running` with no process behind it
            run.set_status("failed", error=f"Could not start the job: {exc}")
            raise RunError(f"Could not start the job for run {run.id}.", found=str(exc)) from exc
    _reap(proc)
    fresh = load_run(run.id, root=run.path.parent.parent)
    if fresh.manifest.status == "running":
        fresh.set_status("running", pid=proc.pid, pid_started=process_start_time(proc.pid))
    record("started", run.id, run.manifest.name, root=run.path.parent.parent)
    return proc.pid


def request_stop(run: Run | str) -> None:
    """Ask a running job to stop: it finishes the current step, saves the model and ends `stopped`."""
    from core.runs.actor import require
    from core.runs.audit import record

    run = _run_of(run)
    require("stop", f"stop {run.id}")
    run.artifact(STOP_FILE).write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"), encoding="utf-8")
    record("stopped", run.id, root=run.path.parent.parent)


def stop_requested(run_path: Path) -> bool:
    """Whether a stop file exists in a run folder."""
    return (run_path / STOP_FILE).exists()


def append_event(run_path: Path, event: dict[str, Any]) -> None:
    """Append one event (one JSON line, with a timestamp) to the run's progress.jsonl."""
    record = {"time": round(time.time(), 3), **event}
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    # One write call per line in append mode: readers see whole lines, or a partial last line
    # that read_progress skips.
    with (run_path / PROGRESS_FILE).open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()


def read_progress(run: Run | str) -> list[dict[str, Any]]:
    """All events of a run, oldest first. A half-written last line is skipped."""
    run = _run_of(run)
    path = run.artifact(PROGRESS_FILE)
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def tail_log(run: Run | str, lines: int = 30) -> str:
    """The last lines of a run's job.log (empty when there is none)."""
    run = _run_of(run)
    path = run.artifact(JOB_LOG)
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class JobStatus:
    """A job's state as read from disk: status, process, and the latest progress figures."""

    run_id: str
    status: str
    pid: int | None
    alive: bool
    error: str = ""
    hint: str = ""
    step: int = 0
    total_steps: int | None = None
    epoch: float | None = None
    steps_per_s: float | None = None
    eta_s: float | None = None
    gpu_mem_gib: float | None = None
    phase: str = ""
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    evals: list[dict[str, Any]] = field(
        default_factory=list
    )  # {"epoch", "step", "ndcg@10": {dim: v}}
    warnings: list[str] = field(default_factory=list)
    events: int = 0

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "stopped")

    @property
    def fraction(self) -> float | None:
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)


def _mark_dead(run: Run) -> Run:
    """Re-read the manifest (the job may have just finished) and mark it failed if still running."""
    fresh = load_run(run.id, root=run.path.parent.parent)
    if fresh.manifest.status == "running":
        fresh.set_status("failed", error=DIED_MESSAGE, hint=DIED_HINT)
        append_event(fresh.path, {"event": "end", "status": "failed", "error": DIED_MESSAGE})
    return fresh


def job_status(run: Run | str) -> JobStatus:
    """Read a job's status and progress from its run folder; detect a job whose process died."""
    run = _run_of(run)
    # Re-read, so a Run object held by a page is never stale.
    run = load_run(run.id, root=run.path.parent.parent)
    summary = run.manifest.summary
    pid = summary.get("pid")
    alive = is_process_alive(pid, summary.get("pid_started"))
    never_started = (  # launched, yet no process ever said its pid (the starter died mid-launch)
        not pid
        and summary.get("job_module")
        and time.time() - float(summary.get("job_started_at") or time.time()) > NO_PID_AFTER_S
    )
    if run.manifest.status == "running" and not alive and (pid or never_started):
        run = _mark_dead(run)
        summary = run.manifest.summary
    events = read_progress(run)
    step, total, epoch, rate, eta, mem, phase = 0, None, None, None, None, None, ""
    losses: list[tuple[int, float]] = []
    evals: list[dict[str, Any]] = []
    warnings: list[str] = []
    for ev in events:
        kind = ev.get("event")
        if kind == "start":
            total = ev.get("total_steps", total)
            warnings = list(ev.get("warnings", warnings))
        elif kind == "phase":
            phase = ev.get("message", "")
        elif kind == "log":
            step = int(ev.get("step", step))
            total = ev.get("total_steps", total)
            epoch = ev.get("epoch", epoch)
            rate = ev.get("steps_per_s", rate)
            eta = ev.get("eta_s", eta)
            mem = ev.get("gpu_mem_gib", mem)
            if ev.get("loss") is not None:
                losses.append((step, float(ev["loss"])))
        elif kind == "eval":
            evals.append(ev)
    return JobStatus(
        run_id=run.id,
        status=run.manifest.status,
        pid=pid,
        alive=alive,
        error=run.manifest.error or "",
        hint=str(summary.get("hint") or ""),
        step=step,
        total_steps=total,
        epoch=epoch,
        steps_per_s=rate,
        eta_s=eta,
        gpu_mem_gib=mem,
        phase=phase,
        losses=losses,
        evals=evals,
        warnings=warnings,
        events=len(events),
    )


def running_jobs(kind: str | None = None) -> list[Run]:
    """Runs whose background job is running now (newest first). A job whose process died is
    marked failed on the way (job_status); runs without a job are left out."""
    from core.runs.folders import list_runs

    alive = []
    for run in list_runs(kind):
        if run.manifest.status == "running" and run.manifest.summary.get("job_module"):
            if job_status(run).status == "running":
                alive.append(run)
    return alive


def progress_writer(run: Run) -> ProgressCallback:
    """A progress callback that appends each event to the run's progress.jsonl, in the shape
    `job_status` reads (a `phase` event when the text changes, a `log` event with the count)."""
    last: list[str] = [""]

    def write(event: ProgressEvent) -> None:
        # A message that already names its stage ('generating questions: 2/4') is not
        # prefixed again.
        named = not event.message or event.message.startswith(event.stage)
        phase = (event.message or event.stage) if named else f"{event.stage}: {event.message}"
        if phase != last[0]:
            append_event(run.path, {"event": "phase", "message": phase})
            last[0] = phase
        append_event(
            run.path,
            {"event": "log", "step": event.done, "total_steps": event.total, "eta_s": event.eta_s},
        )

    return write


StageWork = Callable[[Run, ProgressCallback, StopCheck], object]


def job_main(argv: list[str] | None, *, module: str, what: str, work: StageWork) -> int:
    """The body of a stage's job module (`python -m <module> <run_id>`): set the offline
    environment, run `work(run, on_progress, should_stop)` on the run the page or CLI made,
    and end it done, stopped or failed with one `end` event. Exit status 0 unless it failed."""
    import argparse

    from core.errors import StoppedError

    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=f"Run a {what}.")
    parser.add_argument("run_id", help=f"the run of the {what} (made by the page or the CLI)")
    args = parser.parse_args(argv)
    prepare_job_process()
    run = load_run(args.run_id)
    if run.manifest.status == "running":  # the job says who it is: its starter may not have yet
        run.set_status("running", pid=os.getpid(), pid_started=process_start_time(os.getpid()))
    try:
        work(run, progress_writer(run), lambda: stop_requested(run.path))
    except StoppedError:
        fresh = load_run(run.id)
        if fresh.manifest.status == "running":  # stopped between the stage's own guards
            fresh.set_status("stopped", error="Stopped on request.")
        append_event(run.path, {"event": "end", "status": "stopped"})
        print(f"{what} {run.id} ended: stopped", flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - the run is marked failed with the message
        from core.runs.guard import failure_message

        fresh = load_run(run.id)
        if fresh.manifest.status == "running":  # failed before the stage could say so
            fresh.set_status("failed", error=failure_message(exc))
        append_event(run.path, {"event": "end", "status": "failed", "error": str(exc)[:500]})
        print(f"{what} {run.id} ended: failed: {exc}", flush=True)
        return 1
    fresh = load_run(run.id)
    if fresh.manifest.status == "running":
        fresh.set_status("done")
    append_event(run.path, {"event": "end", "status": fresh.manifest.status})
    print(f"{what} {run.id} ended: {fresh.manifest.status}", flush=True)
    return 0
