"""A guard over saved runs: record every file of the runs that exist now, check later that each
one is still there, byte for byte, and that the runs still load and list as before.

    guard = StoreGuard.capture()
    ...feed the bad input...
    guard.check()        # raises AssertionError naming the first lost or changed file
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from core.runs.folders import list_runs, load_run, runs_root


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_of(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, keyed by its path relative to `root`."""
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class StoreGuard:
    """The files and manifests of the runs that existed when it was captured."""

    root: Path
    files: dict[str, str]  # "run-id/relative/path" -> sha256
    manifests: dict[str, dict]  # run id -> manifest dump

    @classmethod
    def capture(cls, root: Path | None = None) -> StoreGuard:
        runs_dir = runs_root(root)
        runs = list_runs(root=root)
        assert runs, "nothing to guard: create the baseline runs first"
        return cls(
            root=runs_dir,
            files={
                f"{run.id}/{name}": digest
                for run in runs
                for name, digest in files_of(run.path).items()
            },
            manifests={run.id: run.manifest.model_dump() for run in runs},
        )

    def check(self) -> None:
        """Every guarded file is present and unchanged; every guarded run loads and lists."""
        for name, digest in self.files.items():
            path = self.root / name
            assert path.is_file(), f"lost: {name}"
            assert _digest(path) == digest, f"changed: {name}"
        listed = {run.id for run in list_runs(root=self.root.parent)}
        for run_id, manifest in self.manifests.items():
            assert run_id in listed, f"run {run_id} no longer listed"
            assert load_run(run_id, root=self.root.parent).manifest.model_dump() == manifest
            json.loads((self.root / run_id / "manifest.json").read_text(encoding="utf-8"))
