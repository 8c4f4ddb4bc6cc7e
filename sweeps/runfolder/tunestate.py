"""The one reader of Ray Tune's experiment state as the run folder holds it (JSON, never
unpickled): each trial's status, folder, index, retries and node losses."""

from __future__ import annotations

import json
from typing import Any

from sweeps.runfolder.layout import is_state_file, state_file, trial_folder_name
from sweeps.runfolder.storage import list_folder, read_text_or_none


def experiment_state(run_path: str) -> dict[str, dict[str, Any]]:
    """trial_id -> {status, retries, config} from Tune's newest experiment state (empty if none)."""
    names = sorted(n for n, _ in list_folder(run_path) if is_state_file(n))
    for name in reversed(names):
        text = read_text_or_none(state_file(run_path, name))
        try:
            data = json.loads(text or "")
        except ValueError:
            continue  # being rewritten right now: take the one before
        states = {}
        for entry in data.get("trial_data", []):
            try:
                meta = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
                run_meta = json.loads(entry[1]) if isinstance(entry[1], str) else entry[1]
            except (ValueError, IndexError, TypeError):
                continue
            tag = str(meta.get("experiment_tag", ""))
            states[meta["trial_id"]] = {"status": meta.get("status", "UNKNOWN"),
                                        "folder": meta.get("relative_logdir") or trial_folder_name(meta["trial_id"]),
                                        "index": int(tag.split("_", 1)[0]) if tag[:1].isdigit() else 0,
                                        "retries": int(run_meta.get("num_failures", 0) or 0),
                                        # node losses: sweeps.engine.reclaim
                                        "node_losses": int(run_meta.get("node_losses", 0) or 0),
                                        "config": meta.get("config", {})}
        return states
    return {}
