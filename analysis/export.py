"""A sweep's model as a file that runs without resweep: a `torch.export` program (`.pt2`, torch
alone: the format PyTorch keeps), an AOTInductor package (that program compiled ahead of time to
native code for this machine's kind of CPU and this torch: no Python-level model code runs),
ONNX (onnxruntime alone) or, on request, TorchScript (which PyTorch deprecates), with its
preprocessing inside, checked against the PyTorch model before it
is written, and a model card beside it.

The artifact takes a uint8 batch [B, C, S, S] (S = `input_size` in meta.json: images resized on
their short side to S and center-cropped, as the trials' data cache holds them) and returns the
class probabilities [B, K]; it normalises and crops to the trained `image_size` itself. Its
folder holds `model.pt2`, `model_aoti.pt2`, `model.onnx` or `model.pt`, `meta.json` (classes, sizes, provenance) and
`MODEL.md`. The batch is dynamic in each format.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from trainer.augment import storage_size
from trainer.errors import DataError

from .output import check_output_folder, replaced_folder
from .results import Run, load_run
from .trained import Trained, load_trained

FORMATS = {"pt2": "model.pt2", "aoti": "model_aoti.pt2", "onnx": "model.onnx", "torchscript": "model.pt"}
DEPRECATED = {"torchscript": "TorchScript is deprecated in PyTorch (torch.jit.save says so); the default, "
                             "--format pt2, is the format it keeps"}
META_FILE = "meta.json"
CARD_FILE = "MODEL.md"
# The artifact must answer as the PyTorch model does: probabilities within this, and the same top-1
# class for this share of the check images (a near-tie may flip on rounding).
MAX_PROBABILITY_DIFFERENCE = 1e-4
MIN_TOP1_AGREEMENT = 0.999
CHECK_IMAGES = 512  # at most, from the test split (the validation split where there is none)


class ExportError(RuntimeError):
    """The export cannot be made or failed its check; one line."""


class Packaged(nn.Module):
    """uint8 images [B, C, S, S] -> class probabilities [B, K]: normalise, center-crop to the
    trained size, the network, softmax."""

    def __init__(self, model: nn.Module, mean, std, input_size: int, image_size: int):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.top = (input_size - image_size) // 2
        self.image_size = image_size

    mean: torch.Tensor  # buffers, registered above
    std: torch.Tensor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255 - self.mean) / self.std
        x = x[:, :, self.top:self.top + self.image_size, self.top:self.top + self.image_size]
        return F.softmax(self.model(x).float(), dim=1)


@dataclass
class Loaded:
    """A trial's best checkpoint, packaged, with what the card and the check need."""
    packaged: Packaged
    trained: Trained
    input_size: int
    trial: pd.Series


def choose_trial(run: Run, trial: str | None = None, max_latency_ms: float | None = None,
                 max_params: float | None = None) -> pd.Series:
    """The named trial, else the best one (by the sweep's metric) whose cost fits the limits."""
    kept = run.with_models()
    if trial is not None:
        rows = run.trials[run.trials["trial_id"] == trial]
        if rows.empty:
            raise ExportError(f"--trial {trial}: no such trial in {run.path}; `analysis table {run.path}` lists them")
        if rows.iloc[0]["checkpoint"] == "":
            raise ExportError(f"--trial {trial} kept no checkpoint (it {rows.iloc[0]['status'].lower()} before its "
                              f"first epoch ended); pick another from `analysis table {run.path}`")
        return rows.iloc[0]
    for column, limit, option in (("latency_ms", max_latency_ms, "--max-latency-ms"),
                                  ("params", max_params, "--max-params")):
        if limit is None:
            continue
        if column not in kept or kept[column].isna().all():
            raise ExportError(f"{option}: this sweep's trials did not measure {column} (a sweep from before "
                              f"resweep measured costs); name one with --trial")
        fitting = kept[kept[column] <= limit]
        if fitting.empty:
            raise ExportError(f"{option} {limit:g}: no trial fits; the smallest is {kept[column].min():.4g}")
        kept = fitting
    if kept.empty:
        raise ExportError(f"{run.path}: no trial kept a checkpoint; wait for a first epoch to end")
    return kept.iloc[0]


def load_trial(run: Run, row: pd.Series) -> Loaded:
    trained = load_trained(row["checkpoint"])
    input_size = storage_size(trained.config.augment, trained.config.image_size)
    packaged = Packaged(trained.model, trained.mean, trained.std, input_size, trained.config.image_size).eval()
    return Loaded(packaged, trained, input_size, row)


def check_images(loaded: Loaded, data_dir: Path | None) -> tuple[str, torch.Tensor, torch.Tensor]:
    """(split name, uint8 images, labels) the export is checked on, as the trials' cache holds them."""
    try:
        data = loaded.trained.data(data_dir)
    except DataError as err:
        raise ExportError(f"the check needs the run's data here: {err}; pass --data-dir") from None
    name, split = ("test", data.test) if len(data.test) else ("validation", data.val)
    return name, split.images[:CHECK_IMAGES].cpu().contiguous(), split.labels[:CHECK_IMAGES].cpu()


def batch_dim() -> dict:
    return {"images": {0: torch.export.Dim("batch", min=1)}}


def _write_pt2(packaged: Packaged, example: torch.Tensor, path: Path, meta: dict):
    program = torch.export.export(packaged, (example,), dynamic_shapes=batch_dim())
    torch.export.save(program, str(path), extra_files={META_FILE: json.dumps(meta)})
    loaded = torch.export.load(str(path)).module()
    return lambda images: loaded(images)


def compile_aoti(program: torch.export.ExportedProgram, path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """`program` compiled by AOTInductor into a package at `path` (it needs a C++ compiler), loaded back."""
    import logging

    if shutil.which("g++") is None and shutil.which("c++") is None:
        raise ExportError("--format aoti compiles C++: install a compiler (apt-get install g++), or use "
                          "--format pt2")
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on a CPU machine
    try:
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    except Exception as err:  # the compiler's failure, whatever its type, is one line
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise ExportError(f"AOTInductor could not compile the model ({first[:200]}); --format pt2 needs no "
                          f"compiler") from None
    return torch._inductor.aoti_load_package(str(path))


def _write_aoti(packaged: Packaged, example: torch.Tensor, path: Path, meta: dict):
    program = torch.export.export(packaged, (example,), dynamic_shapes=batch_dim())
    return compile_aoti(program, path)


def _write_torchscript(packaged: Packaged, example: torch.Tensor, path: Path, meta: dict):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice: TorchScript is what the user asked for
        traced = torch.jit.trace(packaged, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={META_FILE: json.dumps(meta)})
        loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda images: loaded(images)


def _write_onnx(packaged: Packaged, example: torch.Tensor, path: Path, meta: dict):
    import contextlib
    import io

    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ExportError("--format onnx needs onnx and onnxruntime: pip install -e '.[onnx]'") from None
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        torch.onnx.export(packaged, (example,), str(path), input_names=["images"], output_names=["probabilities"],
                          dynamic_shapes=batch_dim(), dynamo=True)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"resweep": json.dumps(meta)})
    onnx.save(model, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


WRITERS = {"pt2": _write_pt2, "aoti": _write_aoti, "onnx": _write_onnx, "torchscript": _write_torchscript}


def export(run_path: str, out: Path, fmt: str = "pt2", trial: str | None = None,
           max_latency_ms: float | None = None, max_params: float | None = None,
           data_dir: Path | None = None) -> dict:
    """Write the chosen trial's model to `out` in `fmt`, after checking that the written file
    answers as the PyTorch model does on the run's test images. Returns the check's figures."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    check_output_folder(out, "--out")
    run = load_run(run_path)
    loaded = load_trial(run, choose_trial(run, trial, max_latency_ms, max_params))
    split, images, labels = check_images(loaded, data_dir)
    with torch.no_grad():
        reference = torch.cat([loaded.packaged(images[i:i + 64]) for i in range(0, len(images), 64)])
    meta = _meta(run, loaded, fmt)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FORMATS[fmt]
        artifact = WRITERS[fmt](loaded.packaged, images[:2], path, meta)
        with torch.no_grad():
            answers = torch.cat([artifact(images[i:i + 64]) for i in range(0, len(images), 64)])
        difference = float((answers - reference).abs().max())
        agreement = float((answers.argmax(1) == reference.argmax(1)).float().mean())
        check = {"split": split, "images": len(images), "max_difference": difference, "top1_agreement": agreement,
                 "accuracy": float((answers.argmax(1) == labels).float().mean())}
        if not (difference <= MAX_PROBABILITY_DIFFERENCE and agreement >= MIN_TOP1_AGREEMENT):
            raise ExportError(f"the {fmt} model answers differently from the PyTorch one on {len(images)} {split} "
                              f"images (largest probability difference {difference:.2g}, allowed "
                              f"{MAX_PROBABILITY_DIFFERENCE:g}; same top-1 {agreement:.1%}, needed "
                              f"{MIN_TOP1_AGREEMENT:.1%}); nothing was written")
        meta["check"] = check
        with replaced_folder(out) as folder:  # whole, or not at all
            shutil.copyfile(path, folder / FORMATS[fmt])
            (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            (folder / CARD_FILE).write_text(model_card(run, loaded, meta, answers.argmax(1).numpy(),
                                                       labels.numpy()))
    return check


def log_to_mlflow(uri: str, out: Path, meta: dict) -> str:
    """The export as an MLflow model (mlflow.pytorch for pt2 and TorchScript, mlflow.onnx for ONNX; an
    AOTInductor package, which no MLflow flavour loads, as the export folder's artifacts alone) in a run
    of the experiment `resweep-<preset>`, with the check's figures and the whole export folder
    (MODEL.md included) as artifacts. Returns the MLflow run id."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise ExportError("--mlflow needs the mlflow package: pip install -e '.[mlflow]' (or pip install mlflow)")
    import logging

    import mlflow
    from mlflow.exceptions import MlflowException

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its table-creation notes
    try:
        return _log_to_mlflow(mlflow, uri, out, meta)
    except MlflowException as err:
        raise ExportError(f"--mlflow {uri}: {str(err).splitlines()[0]}; the export in {out} is written") from None


def _log_to_mlflow(mlflow, uri: str, out: Path, meta: dict) -> str:
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(f"resweep-{meta['preset']}")
    with mlflow.start_run(run_name=f"export {meta['trial']}") as run:
        mlflow.log_params({k: meta[k] for k in ("format", "trial", "preset", "dataset", "model", "image_size",
                                                 "input_size", "metric")})
        mlflow.log_metrics({"check_accuracy": meta["check"]["accuracy"],
                            "check_max_difference": meta["check"]["max_difference"],
                            "check_top1_agreement": meta["check"]["top1_agreement"],
                            **({meta["metric"]: meta["value"]} if meta["value"] is not None else {})})
        mlflow.set_tags({"resweep.run": meta["run"], "resweep.trial": meta["trial"]})
        if meta["format"] == "pt2":
            program = torch.export.load(str(out / FORMATS["pt2"])).module()
            example = np.zeros((2, meta["channels"], meta["input_size"], meta["input_size"]), dtype=np.uint8)
            mlflow.pytorch.log_model(program, name="model", input_example=example, pip_requirements=["torch"],
                                     serialization_format="pt2")
        elif meta["format"] == "torchscript":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mlflow.pytorch.log_model(torch.jit.load(str(out / FORMATS["torchscript"])), name="model",
                                         pip_requirements=["torch"], serialization_format="pickle")
        elif meta["format"] == "onnx":
            import onnx

            mlflow.onnx.log_model(onnx.load(str(out / FORMATS["onnx"])), name="model",
                                  pip_requirements=["onnxruntime"])
        mlflow.log_artifacts(str(out), artifact_path="export")
    return run.info.run_id


def _meta(run: Run, loaded: Loaded, fmt: str) -> dict:
    row, trained = loaded.trial, loaded.trained
    value = row[run.metric]
    return {"format": fmt, "classes": trained.classes, "channels": trained.channels, "input_size": loaded.input_size,
            "image_size": trained.config.image_size, "input": "uint8 [batch, channels, input_size, input_size], "
            "short side resized to input_size then center-cropped", "output": "class probabilities [batch, classes]",
            "run": run.path, "preset": run.plan.preset, "trial": str(row["trial_id"]), "metric": run.metric,
            "value": None if pd.isna(value) else float(value), "best_epoch": int(row["best_epoch"]),
            "epochs_trained": int(row["epochs_trained"]), "stopped_early": bool(row["stopped_early"]),
            "dataset": trained.config.dataset, "model": trained.config.model,
            "exported": time.strftime("%Y-%m-%d %H:%M")}


def _cost_line(row: pd.Series, column: str, label: str, fmt: str) -> str:
    value = row.get(column, math.nan)
    return f"| {label} | {'—' if pd.isna(value) else format(value, fmt)} |"


def model_card(run: Run, loaded: Loaded, meta: dict, predictions: np.ndarray, labels: np.ndarray) -> str:
    """MODEL.md: the sections a model hub's card has."""
    row, trained, check = loaded.trial, loaded.trained, meta["check"]
    config, classes = trained.config, trained.classes
    per_class = pd.DataFrame({"class": classes,
                              "images": np.bincount(labels, minlength=len(classes)),
                              "correct": np.bincount(labels[predictions == labels], minlength=len(classes))})
    per_class["accuracy"] = (per_class["correct"] / per_class["images"].where(per_class["images"] > 0)).round(4)
    hours_trial = float(row.get("time_s", 0) or 0) / 3600
    hours_sweep = float(np.nansum(run.trials["time_s"])) / 3600
    searched = ", ".join(f"`{k}={row[k]}`" for k in run.search_keys) or "none"
    training = ", ".join(f"{k}={v}" for k, v in config.to_dict().items()
                         if k in ("model", "width", "head", "pretrained", "image_size", "augment", "optimizer", "lr",
                                  "weight_decay", "scheduler", "epochs", "batch_size", "label_smoothing"))
    lines = [
        f"# {config.model} on {config.dataset}", "",
        f"A {config.model} image classifier of {len(classes)} classes, trained by resweep's sweep "
        f"`{run.plan.preset}` and exported as {meta['format']} ({FORMATS[meta['format']]}).", "",
        "## Use", "",
        "```python",
        *({"pt2": ["import json, torch", f"model = torch.export.load('{FORMATS['pt2']}').module()"],
           "torchscript": ["import json, torch", f"model = torch.jit.load('{FORMATS['torchscript']}')"],
           "aoti": ["import json, torch", f"model = torch._inductor.aoti_load_package('{FORMATS['aoti']}')"],
           "onnx": ["import json, onnxruntime", f"session = onnxruntime.InferenceSession('{FORMATS['onnx']}')"]
           }[meta["format"]]),
        f"meta = json.load(open('{META_FILE}'))",
        f"# images: uint8 [batch, {trained.channels}, {loaded.input_size}, {loaded.input_size}], each resized on its "
        f"short side to {loaded.input_size} and center-cropped",
        "probabilities = " + ("session.run(None, {'images': images})[0]" if meta["format"] == "onnx" else
                              "model(images)") + "  # [batch, classes]",
        "```", "",
        "Or `analysis predict THIS_FOLDER IMAGES...` where resweep is installed.", "",
        "## Data", "",
        f"- data set `{config.dataset}`, {len(classes)} classes: " + ", ".join(classes[:20])
        + (" ..." if len(classes) > 20 else ""),
        f"- input {trained.channels} channel(s) at {loaded.input_size} px, center-cropped to {config.image_size} px",
        "", "## Training configuration", "", f"- {training}", f"- searched values of this trial: {searched}",
        *([f"- stopped early by the sweep's ASHA after {meta['epochs_trained']} of {config.epochs} epochs "
           f"({run.plan.stopping_rule})"] if meta["stopped_early"] else []), "",
        "## Metrics", "",
        f"- {run.metric} = {meta['value']:.4f} (its best epoch, {meta['best_epoch']}, whose weights these are)"
        if meta["value"] is not None else f"- {run.metric}: not recorded",
        f"- {check['split']} accuracy of the exported model: **{check['accuracy']:.4f}** on {check['images']} images",
        f"- the export answers as the PyTorch model: largest probability difference {check['max_difference']:.2g}, "
        f"same top-1 class on {check['top1_agreement']:.1%}", "",
        f"Per-class accuracy on those {check['split']} images:", "",
        per_class.to_markdown(index=False), "",
        "## Cost", "", "| | |", "|---|---|",
        _cost_line(row, "params", "parameters", ",.0f"), _cost_line(row, "gflops", "GFLOPs per image", ".3g"),
        _cost_line(row, "latency_ms", "inference ms per image, batch 1, on the trial's device", ".3g"),
        _cost_line(row, "infer_img_s", "inference images/s, batch 64, on the trial's device", ",.0f"), "",
        "## Limitations", "",
        f"- Trained and measured on `{config.dataset}` alone; images unlike it (other sources, sizes, "
        "lighting) may score far lower.",
        f"- The {check['split']} accuracy above is on {check['images']} images: with few images per class its "
        "uncertainty is several points.",
        "- The trial was chosen among the sweep's by its validation score, which flatters it a little.",
        *([f"- Native code for {platform.machine()} CPUs and torch {torch.__version__}: load it with that torch on "
           "that kind of machine, or export --format pt2 for any"] if meta["format"] == "aoti" else []), "",
        "## Provenance", "",
        f"- sweep `{run.plan.name}` (preset `{run.plan.preset}`), run folder `{run.path}`",
        f"- trial `{meta['trial']}`, {int(row['epochs_trained'])} epochs; {hours_trial:.2g} hours of training for "
        f"this trial, {hours_sweep:.2g} for the whole sweep ({len(run.trials)} trials)",
        f"- exported {meta['exported']}",
    ]
    return "\n".join(lines) + "\n"
