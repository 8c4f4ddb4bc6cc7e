"""Classify image files with an exported model or a run's best trial.

MODEL is an export folder (`analysis export`: model.pt2, model_aoti.pt2, model.onnx or model.pt with meta.json) or a run
folder (its best trial's checkpoint, through PyTorch). IMAGES are files or folders (searched
recursively). Each image is decoded as the trials' cache decodes it (short side resized,
center crop), in batches. A file that is not an image, or an image that cannot be read, is
skipped with one warning line naming it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from trainer.datasets import decode

from .export import FORMATS, META_FILE, ExportError

BATCH = 64
log = logging.getLogger("resweep")


@dataclass
class Classifier:
    classes: list[str]
    channels: int
    input_size: int
    probabilities: Callable[[torch.Tensor], torch.Tensor]  # uint8 [B, C, S, S] -> [B, K]
    source: str


def load_classifier(model: str) -> Classifier:
    folder = Path(model)
    meta_file = folder / META_FILE
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        path = folder / FORMATS.get(meta.get("format", ""), "")
        if not path.is_file():
            raise ExportError(f"{folder}: {META_FILE} names a {meta.get('format')} model but {path.name} is missing; "
                              f"export again with `analysis export`")
        if meta["format"] == "pt2":
            program = torch.export.load(str(path)).module()
            run = lambda images: program(images)  # noqa: E731
        elif meta["format"] == "aoti":
            run = torch._inductor.aoti_load_package(str(path))
        elif meta["format"] == "torchscript":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
                scripted = torch.jit.load(str(path), map_location="cpu")
            run = lambda images: scripted(images)  # noqa: E731
        else:
            try:
                import onnxruntime
            except ImportError:
                raise ExportError("an ONNX model needs onnxruntime: pip install -e '.[onnx]'") from None
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            run = lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])  # noqa: E731
        return Classifier(meta["classes"], int(meta["channels"]), int(meta["input_size"]), run, str(path))
    from .export import choose_trial, load_trial
    from .results import load_run

    run_data = load_run(model)  # a run folder: its best trial, eagerly
    loaded = load_trial(run_data, choose_trial(run_data))
    return Classifier(loaded.trained.classes, loaded.trained.channels, loaded.input_size, loaded.packaged,
                      f"{model} trial {loaded.trial['trial_id']}")


def image_files(paths: list[Path]) -> list[Path]:
    """The files named, and every file under the folders named, in order."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise ExportError(f"{path}: no such file or folder")
    return found


def read_image(path: Path, size: int, channels: int) -> tuple[np.ndarray | None, str]:
    """(uint8 [C, S, S], "") or (None, why it was skipped)."""
    try:
        with Image.open(path) as image:
            image.verify()
    except UnidentifiedImageError:
        return None, "not an image"
    except (OSError, SyntaxError, ValueError) as err:
        return None, f"a damaged image ({str(err).splitlines()[0][:80]})"
    array = decode(path, size, channels)
    return (array, "") if array is not None else (None, "a damaged image (it cannot be decoded)")


def predict(classifier: Classifier, files: list[Path], top_k: int = 3,
            progress: Callable[[int], None] | None = None) -> tuple[list[dict], list[tuple[Path, str]]]:
    """A row per readable image (file, then its top-k classes and probabilities), and the files
    skipped with why."""
    rows, skipped = [], []
    k = min(top_k, len(classifier.classes))
    for batch in _batches(files, BATCH):
        arrays, kept = [], []
        for path in batch:
            array, why = read_image(path, classifier.input_size, classifier.channels)
            if array is None:
                log.warning(f"skipped {path}: {why}")
                skipped.append((path, why))
            else:
                arrays.append(array)
                kept.append(path)
        if arrays:
            with torch.no_grad():
                probabilities = classifier.probabilities(torch.from_numpy(np.stack(arrays)))
            top_p, top_c = probabilities.topk(k, dim=1)
            for path, p, c in zip(kept, top_p.tolist(), top_c.tolist()):
                row = {"file": str(path)}
                for rank, (pi, ci) in enumerate(zip(p, c), start=1):
                    row[f"class_{rank}"], row[f"p_{rank}"] = classifier.classes[ci], round(pi, 4)
                rows.append(row)
        if progress is not None:
            progress(len(batch))
    return rows, skipped


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
