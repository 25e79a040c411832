"""Runs: every stage's output is a folder with a manifest (folders.py), linked by lineage
(lineage.py), guarded so a failed stage leaves nothing half-made (guard.py), and long stages run
as background jobs (jobs.py). It imports no stage."""
