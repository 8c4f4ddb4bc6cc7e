"""The run folder: its format, read and written, and nothing that imports Ray, torch or Optuna
at import time. `storage` (local and URI I/O), `layout` (the names), `plan` (the frozen plan and
its file), `claim` (one driver per run), `results` (a trial's result file), `tunestate` (Tune's
state file), `run` (a run read whole, its best trial and how trials ended), `study` (optuna.db)."""
