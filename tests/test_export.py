"""`analysis export` and `analysis predict` on a real sweep of the digits: torch.export (.pt2),
ONNX and TorchScript artifacts that answer as the PyTorch model does, a .pt2 model that runs
where resweep cannot be imported, and predict on a folder with an image, a text file and a
truncated image."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from analysis.cli import app
from analysis.export import CHECK_IMAGES, FORMATS, MAX_PROBABILITY_DIFFERENCE
from analysis.results import load_run
from trainer.config import from_dict
from trainer.datasets import load_data

pytestmark = pytest.mark.slow


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(crashed_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    folders = {}
    for fmt in FORMATS:
        result = invoke("export", crashed_run, "--out", out / fmt, "--format", fmt)
        assert result.exit_code == 0, result.output
        assert "checked on" in result.output and "same top-1 answer 100.0%" in result.output
        # TorchScript on request only, said to be deprecated (and torch's own notice not shown)
        assert ("TorchScript is deprecated" in result.output) == (fmt == "torchscript"), result.output
        assert "torch.jit.save` is deprecated" not in result.output
        folders[fmt] = out / fmt
    return folders


def _digit_png(path: Path, label: int) -> None:
    """A test image of the digits set, written as a PNG file as a user would have it."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    index = int(np.flatnonzero(digits.target == label)[-1])
    Image.fromarray((digits.images[index] * (255 / 16)).round().astype(np.uint8)).resize((64, 64)).save(path)


def test_every_format_is_written_checked_and_described(exported, crashed_run):
    run = load_run(str(crashed_run))
    best = run.ranked()
    best = best[(best["checkpoint"] != "") & (best["failure"] == "")].iloc[0]
    test_images = len(load_data(from_dict({"dataset": "digits", "image_size": 16})).test)
    for fmt, folder in exported.items():
        meta = json.loads((folder / "meta.json").read_text())
        assert (folder / FORMATS[fmt]).is_file() and meta["format"] == fmt
        assert meta["classes"] == [str(d) for d in range(10)] and meta["channels"] == 1
        assert meta["trial"] == best["trial_id"] and meta["input_size"] == 16
        assert meta["epochs_trained"] == best["epochs_trained"] and meta["stopped_early"] == best["stopped_early"]
        check = meta["check"]
        assert check["split"] == "test" and check["images"] == min(CHECK_IMAGES, test_images)
        assert check["max_difference"] <= MAX_PROBABILITY_DIFFERENCE and check["top1_agreement"] == 1.0
        card = (folder / "MODEL.md").read_text()
        for section in ("## Use", "## Data", "## Training configuration", "## Metrics", "## Cost", "## Limitations",
                        "## Provenance"):
            assert section in card, section
        assert f"trial `{best['trial_id']}`" in card
        assert ("stopped early by the sweep's ASHA after" in card) == bool(best["stopped_early"])
        assert {"pt2": "torch.export.load('model.pt2')", "onnx": "onnxruntime.InferenceSession('model.onnx')",
                "torchscript": "torch.jit.load('model.pt')",
                "aoti": "torch._inductor.aoti_load_package('model_aoti.pt2')"}[fmt] in card
        assert ("Native code for" in card) == (fmt == "aoti")
        assert re.search(r"^\|\s+9\s+\|\s+\d+\s+\|", card, re.M), "a per-class accuracy row of class 9"


def test_the_pt2_model_runs_where_resweep_cannot_be_imported(exported, tmp_path):
    png = tmp_path / "seven.png"
    _digit_png(png, 7)
    code = f"""
import sys
for name in ("trainer", "sweeps", "analysis"):
    sys.modules[name] = None  # importing resweep now fails, as on a machine without it
try:
    import trainer
    raise SystemExit("resweep was importable")
except ImportError:
    pass
import json, numpy, torch
from PIL import Image
folder = {str(exported["pt2"])!r}
meta = json.load(open(folder + "/meta.json"))
model = torch.export.load(folder + "/model.pt2").module()
side = meta["input_size"]
image = Image.open({str(png)!r}).convert("L").resize((side, side))
probabilities = model(torch.from_numpy(numpy.asarray(image))[None, None])
print(meta["classes"][int(probabilities.argmax())], float(probabilities.sum()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    label, total = out.stdout.split()
    assert label == "7" and abs(float(total) - 1) < 1e-4


def test_predict_skips_what_is_not_an_image_and_says_so(exported, crashed_run, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for label in (6, 7):  # two classes this short training gets right on its test split
        _digit_png(folder / f"digit{label}.png", label)
    (folder / "notes.txt").write_text("not an image")
    _digit_png(folder / "cut.png", 1)
    data = (folder / "cut.png").read_bytes()
    (folder / "cut.png").write_bytes(data[:len(data) // 2])  # truncated
    for model in (*exported.values(), crashed_run):
        result = CliRunner().invoke(app, ["predict", str(model), str(folder), "--format", "json", "--top-k", "2"])
        assert result.exit_code == 1, result.output  # something was skipped
        assert "Traceback" not in result.output
        assert f"skipped {folder / 'notes.txt'}: not an image" in result.output
        assert f"skipped {folder / 'cut.png'}: a damaged image" in result.output
        rows = json.loads(result.stdout[result.stdout.index("["):result.stdout.rindex("]") + 1])
        assert [Path(r["file"]).name for r in rows] == ["digit6.png", "digit7.png"]
        assert [r["class_1"] for r in rows] == ["6", "7"], rows
        assert all(r["p_1"] >= r["p_2"] for r in rows)
    clean = CliRunner().invoke(app, ["predict", str(exported["pt2"]), str(folder / "digit6.png")])  # a batch of 1
    assert clean.exit_code == 0 and "digit6.png" in clean.output and "class_1" in clean.output


def test_the_aoti_package_answers_as_the_pt2_program_at_any_batch(exported):
    import torch

    program = torch.export.load(str(exported["pt2"] / "model.pt2")).module()
    package = torch._inductor.aoti_load_package(str(exported["aoti"] / "model_aoti.pt2"))
    for batch in (1, 3, 70):  # the batch is dynamic in the compiled code too
        images = torch.randint(0, 256, (batch, 1, 16, 16), dtype=torch.uint8)
        assert torch.allclose(package(images), program(images), atol=1e-5)


def test_export_refuses_with_one_line(crashed_run, tmp_path):
    for args, message in (
        (["--trial", "nope"], "--trial nope: no such trial"),
        (["--max-latency-ms", "0.000001"], "--max-latency-ms 1e-06: no trial fits; the smallest is"),
        (["--format", "tflite"], "--format tflite: use one of pt2, aoti, onnx, torchscript"),
    ):
        result = invoke("export", crashed_run, "--out", tmp_path / "x", *args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists(), "nothing written"


def test_export_logs_an_mlflow_model_that_loads_and_answers_the_same(crashed_run, tmp_path):
    import mlflow
    import torch

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = invoke("export", crashed_run, "--out", tmp_path / "m", "--mlflow", uri)
    assert result.exit_code == 0, result.output
    run_id = result.output.split("mlflow: run ")[1].split()[0]
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.params["format"] == "pt2" and run.data.metrics["check_top1_agreement"] == 1.0
    listed = {a.path for a in client.list_artifacts(run_id, "export")}
    assert {"export/MODEL.md", "export/meta.json", "export/model.pt2"} <= listed
    mlflow.set_tracking_uri(uri)
    logged = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    own = torch.export.load(str(tmp_path / "m" / "model.pt2")).module()
    assert torch.allclose(logged(images), own(images))
