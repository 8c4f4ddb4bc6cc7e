"""Every bad input through the real CLI, as a table: each case must exit non-zero with exactly
one `error:` line that names the problem, print no traceback, answer in seconds (the hangs:
a tracker or a store that does not answer) and leave every file of the test's folders as it
was. The run folders are written by hand in the format Tune and the trials write (no Ray),
with real checkpoints of a tiny model and damaged copies of them."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import handmade_run, preset, tiny
from typer.testing import CliRunner

from analysis.cli import app as analysis_app
from sweeps.cli import app as sweep_app

HANG_LIMIT_S = 15  # the bound: a wrong address fails in seconds, never after a client's minutes of retries
CHECK_S = "4"  # the limit of a command's first contact with a store (10 s by default): a shorter wait here


def _checkpoint(folder: Path) -> Path:
    """A real checkpoint of a tiny model (synthetic data), written where the trials write theirs."""
    from trainer import train

    saved = {}

    def report(metrics, save):
        saved["file"] = save(folder)

    train(tiny(epochs=1), report=report)
    return saved["file"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The folders the cases point at, and the ports: one where nothing listens, one that accepts
    connections and never answers (a store or tracker that hangs)."""
    root = tmp_path_factory.mktemp("bad")
    _, good = handmade_run(root, "good")
    for epoch in (2, 4):
        _checkpoint(good / "trial_aaaa" / f"checkpoint_00000{epoch}")
    damaged = good.parent / "damaged"
    shutil.copytree(good, damaged)
    for file in damaged.glob("trial_aaaa/checkpoint_*/checkpoint.pt"):
        file.write_bytes(file.read_bytes()[:1000])  # cut short, as a node lost mid-write would leave it
    noplan = good.parent / "noplan"
    shutil.copytree(good, noplan)
    (noplan / "resweep.json").unlink()
    badplan = good.parent / "badplan"
    shutil.copytree(good, badplan)
    (badplan / "resweep.json").write_text('{"preset": "quickst')
    closed = _closed_port()
    handmade_run(root, "tracked", mlflow=f"http://127.0.0.1:{closed}")
    (root / "a file").write_text("not a folder")
    image = root / "digit.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 10, 10)).save(image)
    (root / "empty-netrc").write_text("")
    (root / "presets").mkdir()
    preset_file = preset(root / "presets", trials=2, epochs=2)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted = []
    stop = threading.Event()

    def hold():  # accept and never answer
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=hold, daemon=True).start()
    yield {"root": root, "runs": good.parent, "good": good, "damaged": damaged, "noplan": noplan,
           "badplan": badplan, "file": root / "a file", "closed": closed, "silent": listener.getsockname()[1],
           "image": image, "preset": preset_file}
    stop.set()
    listener.close()
    for conn in accepted:
        conn.close()


S3 = "s3://bucket/runs/x?endpoint_override=127.0.0.1:{port}&scheme=http"

# (id, app, argv, expected exit, a fragment of the one error line)
CASES = [
    # sweep run: values out of range
    ("samples<1", "sweep", ["run", "{preset}", "--samples", "-1"], 2, "--samples -1: need at least 1 trial"),
    ("epochs=0", "sweep", ["run", "{preset}", "--max-epochs", "0"], 2, "--max-epochs 0"),
    ("concurrency<0", "sweep", ["run", "{preset}", "--concurrency", "-2"], 2, "--concurrency -2"),
    ("cpus=0", "sweep", ["run", "{preset}", "--cpus-per-trial", "0"], 2, "cpu > 0"),
    ("gpus=1.5", "sweep", ["run", "{preset}", "--gpus-per-trial", "1.5"], 2, "whole GPUs"),
    ("cpus>machine", "sweep", ["run", "{preset}", "--local", "--storage", "{runs}", "--cpus-per-trial", "4096"], 2,
     "asks for 4096 CPUs per trial"),
    ("gpus>machine", "sweep", ["run", "{preset}", "--local", "--storage", "{runs}", "--gpus-per-trial", "64"], 2,
     "GPU per trial and this machine has"),
    ("batch=0", "sweep", ["run", "{preset}", "--set", "batch_size=0"], 2, "batch_size=0 must be > 0"),
    ("not-a-number", "sweep", ["run", "{preset}", "--samples", "x"], 2, "Invalid value for '--samples'"),
    ("no-preset", "sweep", ["run", "no-such-preset"], 2, "no-such-preset"),
    ("missing-argument", "sweep", ["run"], 2, "Missing argument"),
    ("unknown-command", "sweep", ["rnu"], 2, "No such command 'rnu'"),
    ("every<0.5", "sweep", ["status", "{good}", "--every", "0.1"], 2, "'--every'"),
    # sweep run: where results go
    ("storage=s3://", "sweep", ["run", "{preset}", "--storage", "s3://"], 2, "no bucket named"),
    ("storage=ftp", "sweep", ["run", "{preset}", "--storage", "ftp://host/runs"], 2, "unknown scheme 'ftp://'"),
    ("storage-query", "sweep", ["run", "{preset}", "--storage", "s3://b/r?endpont_override=x"], 2,
     "unknown option 'endpont_override'"),
    ("storage-under-a-file", "sweep", ["run", "{preset}", "--local", "--storage", "{file}/runs"], 2,
     "results folder: cannot write to"),
    ("name-with-slash", "sweep", ["run", "{preset}", "--name", "a/b"], 2, "one folder name"),
    ("name-taken", "sweep", ["run", "{preset}", "--local", "--storage", "{runs}", "--name", "good"], 2,
     "already holds a sweep"),
    ("results-without-plan", "sweep", ["run", "{preset}", "--local", "--storage", "{runs}", "--name", "noplan"], 2,
     "holds a sweep's results"),
    ("store-closed", "sweep", ["run", "{preset}", "--local", "--storage", S3.format(port="{closed}")], 2,
     "does not answer"),
    ("store-silent", "sweep", ["run", "{preset}", "--local", "--storage", S3.format(port="{silent}")], 2,
     "does not answer"),
    # sweep run: trackers
    ("mlflow-closed", "sweep", ["run", "{preset}", "--local", "--storage", "{runs}", "--mlflow",
                                "http://127.0.0.1:{closed}"], 2, "nothing listens at 127.0.0.1"),
    ("mlflow-silent", "sweep", ["run", "{preset}", "--local", "--storage", "{runs}", "--mlflow",
                                "http://127.0.0.1:{silent}"], 2, "no answer within"),
    ("mlflow-a-file", "sweep", ["run", "{preset}", "--local", "--storage", "{runs}", "--mlflow", "{file}"], 2,
     "is a file, not a folder"),
    ("wandb-no-login", "sweep", ["run", "{preset}", "--local", "--storage", "{runs}", "--wandb", "proj"], 2,
     "not logged in to W&B"),
    # sweep resume
    ("resume-nothing", "sweep", ["resume", "{root}/nothing"], 2, "no such run folder"),
    ("resume-a-file", "sweep", ["resume", "{file}"], 2, "a file, not a run folder"),
    ("resume-no-plan", "sweep", ["resume", "{noplan}"], 2, "not a sweep run folder"),
    ("resume-bad-plan", "sweep", ["resume", "{badplan}"], 2, "is damaged"),
    ("resume-tracker-closed", "sweep", ["resume", "{runs}/tracked", "--local"], 2, "--no-trackers"),
    # ... and with the tracker dropped, the resume goes past it (to what is wrong next: this run never started)
    ("resume-without-trackers", "sweep", ["resume", "{runs}/tracked", "--local", "--no-trackers"], 2,
     "no sweep state to resume"),
    ("resume-store-closed", "sweep", ["resume", S3.format(port="{closed}")], 2, "does not answer"),
    ("resume-store-silent", "sweep", ["resume", S3.format(port="{silent}")], 2, "does not answer"),
    # readers
    ("status-a-file", "sweep", ["status", "{file}"], 2, "a file, not a run folder"),
    ("status-store-closed", "sweep", ["status", S3.format(port="{closed}")], 2, "does not answer"),
    ("table-store-closed", "analysis", ["table", S3.format(port="{closed}")], 2, "does not answer"),
    ("report-store-silent", "analysis", ["report", S3.format(port="{silent}")], 2, "does not answer"),
    ("table-bad-plan", "analysis", ["table", "{badplan}"], 2, "is damaged"),
    # outputs that would land on a run's own files, or a file where a folder is expected
    ("report-out-a-file", "analysis", ["report", "{good}", "--out", "{file}"], 2, "is a file"),
    ("report-out-in-a-trial", "analysis", ["report", "{good}", "--out", "{good}/trial_aaaa"], 2,
     "inside the run folder"),
    ("table-out-the-plan", "analysis", ["table", "{good}", "--out", "{good}/resweep.json"], 2, "inside the run folder"),
    ("curves-out-under-a-file", "analysis", ["curves", "{good}", "--out", "{file}/c.png"], 2,
     "is a file, not a folder"),
    ("export-out-the-run", "analysis", ["export", "{good}", "--out", "{good}"], 2, "inside the run folder"),
    ("gradcam-out-a-file", "analysis", ["gradcam", "{good}", "--out", "{file}"], 2, "is a file"),
    ("train-out-a-run", "sweep", ["train", "{preset}", "--set", "epochs=1", "--out", "{good}/trial_bbbb"], 2,
     "inside the run folder"),
    ("train-out-a-file", "sweep", ["train", "{preset}", "--out", "{file}"], 2, "is a file"),
    # damaged files
    ("export-damaged-checkpoint", "analysis", ["export", "{damaged}", "--out", "{root}/export"], 2,
     "damaged or cut-short checkpoint"),
    ("predict-damaged-checkpoint", "analysis", ["predict", "{damaged}", "{image}"], 2,
     "damaged or cut-short checkpoint"),
    ("train-resume-damaged", "sweep", ["train", "{preset}", "--resume", "{damaged}/trial_aaaa/checkpoint_000004"], 2,
     "damaged or cut-short checkpoint"),
    ("gradcam-damaged-checkpoint", "analysis", ["gradcam", "{damaged}", "--out", "{root}/cams"], 2,
     "damaged or cut-short checkpoint"),
]
HANGS = {"store-silent", "mlflow-silent", "resume-store-silent", "report-store-silent", "store-closed",
         "resume-store-closed", "mlflow-closed"}


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case, which, argv, code, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_changes_nothing(world, case, which, argv, code, fragment, monkeypatch):
    monkeypatch.chdir(world["root"])  # a URI's report would go to ./reports: nothing may appear here either
    monkeypatch.setenv("RESWEEP_STORE_CHECK_S", CHECK_S)
    monkeypatch.setenv("NETRC", str(world["root"] / "empty-netrc"))  # not logged in to W&B
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_EC2_METADATA_DISABLED": "true",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    args = [a.format(**{k: v for k, v in world.items()}) for a in argv]
    before = _files(world["root"])
    start = time.monotonic()
    result = CliRunner().invoke(sweep_app if which == "sweep" else analysis_app, args)
    seconds = time.monotonic() - start
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning: ")]
    print(f"{case}: exit {result.exit_code} in {seconds:.1f} s: {lines}")
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert _files(world["root"]) == before, "a refused command changed a file"
    assert not (world["runs"] / "x").exists() and not list(world["root"].glob("s3:*")), "a folder was left behind"
    if case in HANGS:
        assert seconds < HANG_LIMIT_S, f"{case} took {seconds:.0f} s"


def test_the_hangs_are_all_in_the_table():
    assert HANGS <= {c[0] for c in CASES}


def test_a_report_uses_the_trials_previous_checkpoint_when_the_best_is_damaged(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["good"], run)
    best = run / "trial_aaaa" / "checkpoint_000004" / "checkpoint.pt"
    best.write_bytes(best.read_bytes()[:500])
    result = CliRunner().invoke(analysis_app, ["report", str(run), "--gradcam-samples", "0"])
    assert result.exit_code == 0, result.output
    text = (run / "report" / "report.md").read_text()
    assert "is damaged; this is its kept checkpoint `checkpoint_000002` instead" in text
    assert "- accuracy **" in text, "the test split was evaluated with the earlier checkpoint"
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and str(best) in warning[0] and "next kept checkpoint" in warning[0]


def test_a_failed_report_leaves_the_one_before_it_whole(world, tmp_path, monkeypatch):
    import analysis.report as report

    run = tmp_path / "run"
    shutil.copytree(world["good"], run)
    first = CliRunner().invoke(analysis_app, ["report", str(run), "--gradcam-samples", "0"])
    assert first.exit_code == 0, first.output
    before = _files(run / "report")

    def fails(*args, **kwargs):
        raise report.ReportError("the pictures could not be drawn")

    sections = [fails if section is report.hyperparameters_section else section for section in report.SECTIONS]
    assert sections != report.SECTIONS
    monkeypatch.setattr(report, "SECTIONS", sections)  # a section failing half-way through
    second = CliRunner().invoke(analysis_app, ["report", str(run), "--gradcam-samples", "0"])
    assert second.exit_code == 2 and "the pictures could not be drawn" in second.stderr
    assert _files(run / "report") == before, "the earlier report was changed"
    assert [p.name for p in run.iterdir() if p.name.startswith(".report")] == [], "the half-written one was left"


def test_a_damaged_result_line_is_named_once_and_the_rest_is_read(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["good"], run)
    results = run / "trial_aaaa" / "result.json"
    lines = results.read_text().splitlines(keepends=True)
    in_progress = '{"epoch": 9'  # the last line, being written: not damaged
    results.write_text(lines[0] + '{"epoch": 2, "val_ac\n' + "".join(lines[1:]) + in_progress)
    result = CliRunner().invoke(sweep_app, ["status", str(run)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {results}: 1 damaged line(s) skipped; the trial's other epochs are read"]
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("aaaa"))
    assert row.split()[2] == "4", "its four epochs are still read"


def test_the_wandb_check_passes_when_logged_in_or_offline(world, monkeypatch):
    """The check is not a refusal of W&B: offline mode, or a key in the netrc file, passes (the
    server's host is then only reached, here through a port of the test's own)."""
    from sweeps.engine.tracking import wandb_problem

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(world["root"] / "empty-netrc"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_problem() is None
    monkeypatch.delenv("WANDB_MODE")
    netrc = world["root"] / "logged-in-netrc"
    netrc.write_text("machine 127.0.0.1\n  login user\n  password k" + "0" * 39 + "\n")
    os.chmod(netrc, 0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{world['silent']}")
    assert wandb_problem() is None
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{world['closed']}")
    assert "cannot reach 127.0.0.1" in wandb_problem()


def _namespaces() -> bool:
    import shutil
    import subprocess

    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"],
                                                                   capture_output=True).returncode == 0


@pytest.mark.skipif(not _namespaces(), reason="needs `unshare -n` (a network namespace: root)")
@pytest.mark.parametrize("command", [["sweep", "run", "{preset}", "--local", "--storage", "s3://resweep-bucket/runs"],
                                     ["sweep", "status", "s3://resweep-bucket/runs/x"],
                                     ["analysis", "table", "s3://resweep-bucket/runs/x"]])
def test_without_a_network_s3_commands_fail_in_seconds_not_minutes(world, command, tmp_path):
    """No credentials and no network (a namespace with only loopback, down): the bucket's region
    lookup and the credentials chain must not hold a command for minutes."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), RESWEEP_STORE_CHECK_S=CHECK_S)  # no ~/.aws here
    module = "sweeps.cli" if command[0] == "sweep" else "analysis.cli"
    args = [a.format(**world) for a in command[1:]]
    start = time.monotonic()
    out = subprocess.run(["unshare", "-n", sys.executable, "-m", module, *args], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - start
    print(f"{command[:2]}: exit {out.returncode} in {seconds:.1f} s: {out.stderr.strip()}")
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "resweep-bucket" in lines[0] and "Traceback" not in out.stderr
    assert seconds < HANG_LIMIT_S
