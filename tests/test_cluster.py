"""The cluster path on one machine, for real: an autoscaling Ray cluster whose 1-GPU workers are
fake nodes started on demand (Ray's fake_multinode provider), results in an S3 server (moto) on
127.0.0.1, the driver SIGKILLed and the sweep resumed from the bucket, everything read back
through S3, and nothing the test started left running (tools/localcluster.py, also
`make cluster-demo`)."""

import re
import shutil

import pytest
from conftest import preset
from typer.testing import CliRunner

from analysis.cli import app as analysis_app
from sweeps.cli import app
from tools.localcluster import CREDENTIALS, S3Server, demo, resumed_cleanly

pytestmark = pytest.mark.slow
HEAD_NODE = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"  # the fake provider's head


def test_the_cluster_path_end_to_end(tmp_path):
    figures = demo(tmp_path / "demo", rounds=1, say=print)
    resumed = figures["rounds"][0]
    assert resumed_cleanly(resumed), resumed["resume_output"][-3000:]
    assert "interrupted" not in resumed["resume_output"] and "Traceback" not in resumed["resume_output"]
    # the head has no GPU: every trial ran on a GPU worker the autoscaler added for it
    assert resumed["nodes"] and HEAD_NODE not in resumed["nodes"] and "" not in resumed["nodes"]
    assert resumed["demand_to_worker_s"] < 120

    read = figures["read_back"]
    assert read["status"].returncode == 0 and read["status"].stdout.count("TERMINATED") == resumed["trials"]
    assert read["table"].returncode == 0 and len(read["table"].stdout.strip().splitlines()) == resumed["trials"] + 1
    # the endpoint given once in $AWS_ENDPOINT_URL instead of the URI's query: the same table
    assert read["plain_table"].returncode == 0 and read["plain_table"].stdout == read["table"].stdout
    text = (read["report_dir"] / "report.md").read_text()
    assert read["report"].returncode == 0 and "could not be evaluated" not in text
    assert "## Best model on the test split" in text and "## Grad-CAM of the best model" in text
    # every picture the report links was written, the test-split and Grad-CAM ones among them
    linked = set(re.findall(r"\]\(([\w_]+\.png)\)", text))
    assert linked == {p.name for p in read["report_dir"].glob("*.png")}
    assert {"confusion.png", "misclassified.png", "gradcam_top4.png", "gradcam_stages.png"} <= linked

    wrong = figures["wrong_address"]
    assert wrong["exit"] == 2 and wrong["seconds"] < 15
    assert wrong["stderr"].startswith("error: cannot join the Ray cluster at ") and wrong["stderr"].count("\n") == 1
    assert not re.search(r"^\[\d{4}-\d\d-\d\d", wrong["stdout"] + wrong["stderr"], re.M), "a Ray C++ log line"

    assert figures["workers_when_idle"] == 0, "idle GPU workers are removed"
    assert figures["survivors"] == [], "a process the test started is still running"


def _sections(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("#") or line.startswith("- accuracy")
            or line.startswith("|")]


def test_a_report_read_through_s3_matches_the_report_of_the_same_run_on_disk(tmp_path, monkeypatch):
    import pyarrow.fs

    result = CliRunner().invoke(app, ["run", preset(tmp_path, trials=3, epochs=2), "--local", "--storage",
                                      str(tmp_path / "runs"), "--name", "r", "--seed", "1"])
    assert result.exit_code == 0, result.output
    local = tmp_path / "runs" / "r"
    s3 = S3Server(tmp_path / "s3").start()
    try:
        for key, value in CREDENTIALS.items():
            monkeypatch.setenv(key, value)
        pyarrow.fs.copy_files(str(local), f"{s3.bucket}/runs/r", destination_filesystem=s3.filesystem())
        shutil.rmtree(local / "report", ignore_errors=True)
        on_disk = CliRunner().invoke(analysis_app, ["report", str(local), "--out", str(tmp_path / "disk")])
        monkeypatch.chdir(tmp_path)
        through_s3 = CliRunner().invoke(analysis_app, ["report", s3.uri("runs/r")])
    finally:
        s3.stop()
    assert on_disk.exit_code == 0, on_disk.output
    assert through_s3.exit_code == 0, through_s3.output
    assert "report: reports/r/report.md" in through_s3.output  # a URI's report goes to a local folder it names
    disk_text = (tmp_path / "disk" / "report.md").read_text()
    s3_text = (tmp_path / "reports" / "r" / "report.md").read_text()
    assert _sections(s3_text) == _sections(disk_text)
    assert "## Grad-CAM of the best model" in s3_text and "could not be evaluated" not in s3_text
    assert sorted(p.name for p in (tmp_path / "reports" / "r").glob("*.png")) == \
        sorted(p.name for p in (tmp_path / "disk").glob("*.png"))
