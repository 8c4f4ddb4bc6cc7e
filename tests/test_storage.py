"""Run-folder paths on a disk and behind URIs (a query naming an S3-compatible endpoint stays at
the end), and the archived Tune state a resume starts from."""

import io
import json
import tarfile

import pytest

from sweeps.engine.archive import kept_aside, remove_orphans, restore_archive
from sweeps.runfolder.layout import STATE_ARCHIVE
from sweeps.runfolder.storage import absolute, join, local_folder, split_name

ENDPOINT = "endpoint_override=127.0.0.1:9000&scheme=http"


@pytest.mark.parametrize("base, parts, joined", [
    (f"s3://bucket/runs?{ENDPOINT}", ("c1",), f"s3://bucket/runs/c1?{ENDPOINT}"),
    (f"s3://bucket/runs/c1?{ENDPOINT}", ("trial_a", "checkpoint_000001"),
     f"s3://bucket/runs/c1/trial_a/checkpoint_000001?{ENDPOINT}"),
    ("s3://bucket", ("c1",), "s3://bucket/c1"),
    ("s3://bucket/runs/", ("c1",), "s3://bucket/runs/c1"),
    ("gs://bucket/runs", ("c1", "x.json"), "gs://bucket/runs/c1/x.json"),
    ("/data/runs", ("c1",), "/data/runs/c1"),
])
def test_join_keeps_a_uris_query_at_the_end(base, parts, joined):
    assert join(base, *parts) == joined


def test_split_name_is_the_inverse_of_join():
    for base in (f"s3://bucket/runs?{ENDPOINT}", "s3://bucket/runs", "s3://bucket", "/data/runs"):
        assert split_name(join(base, "c1")) == (base, "c1")


def test_absolute_drops_a_uris_trailing_slash_and_resolves_a_folder(tmp_path, monkeypatch):
    assert absolute(f"s3://bucket/runs/c1/?{ENDPOINT}") == f"s3://bucket/runs/c1?{ENDPOINT}"
    monkeypatch.chdir(tmp_path)
    assert absolute("runs") == str(tmp_path.resolve() / "runs")


def test_a_local_folder_is_used_in_place(tmp_path):
    with local_folder(str(tmp_path)) as folder:
        assert folder == tmp_path


def _state(trials: list[tuple[str, str | None]], note: str) -> bytes:
    """An experiment state file as Tune writes it, reduced to what the readers use."""
    return json.dumps({"trial_data": [[json.dumps({"trial_id": tid, "relative_logdir": logdir, "note": note}), "{}"]
                                      for tid, logdir in trials]}).encode()


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_resume_starts_from_the_archived_state_not_files_copied_in_part(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # what a killed driver left: one file of the newer snapshot copied, the other not, and a
    # later session's state copied in part
    (run / "experiment_state-2026-01-01_00-00-00.json").write_bytes(_state([("a", "trial_a")], "old"))
    (run / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(b"newer searcher")
    (run / "experiment_state-2026-01-02_00-00-00.json").write_bytes(b'{"trial_data": [[')
    (run / "resweep.json").write_text("{}")
    (run / STATE_ARCHIVE).write_bytes(_archive({
        "experiment_state-2026-01-01_00-00-00.json": _state([("a", "trial_a"), ("b", None)], "archived"),
        "searcher-state-2026-01-01_00-00-00.pkl": b"archived searcher",
        "../escape.json": b"never written",  # a name with a path: ignored
    }))
    folders = restore_archive(str(run))
    assert folders == {"trial_a", "trial_b"}
    assert json.loads(json.loads((run / "experiment_state-2026-01-01_00-00-00.json").read_text())
                      ["trial_data"][0][0])["note"] == "archived"
    assert (run / "searcher-state-2026-01-01_00-00-00.pkl").read_bytes() == b"archived searcher"
    assert not (run / "experiment_state-2026-01-02_00-00-00.json").exists(), "the half-copied later state is gone"
    assert (run / "resweep.json").exists() and not (tmp_path / "escape.json").exists()


def test_without_an_archive_nothing_changes(tmp_path):
    (tmp_path / "experiment_state-x.json").write_text("{}")
    assert restore_archive(str(tmp_path)) is None
    assert (tmp_path / "experiment_state-x.json").read_text() == "{}"


def test_only_unknown_trial_folders_that_kept_nothing_are_removed(tmp_path):
    for name in ("trial_known", "trial_orphan", "trial_worked"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "params.json").write_text("{}")
    (tmp_path / "trial_worked" / "checkpoint_000001").mkdir()
    (tmp_path / "trial_worked" / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"x")
    removed = remove_orphans(str(tmp_path), {"trial_known"})
    assert removed == ["trial_orphan"]
    assert (tmp_path / "trial_known").exists() and (tmp_path / "trial_worked").exists()
    assert not (tmp_path / "trial_orphan").exists()
    assert kept_aside(str(tmp_path), {"trial_known"}) == ["trial_worked"]
