"""Inference of an exported model against the eager PyTorch one, on the CPU: the same packaged
network (uint8 in, probabilities out: what `analysis export` writes) run eagerly, as the
torch.export program `analysis export` writes by default (.pt2, loaded back), as that program
compiled by AOTInductor (`--format aoti`; skipped in the smoke test: a compile takes about half a
minute), as TorchScript and through onnxruntime, at batch 1 (ms per image) and batch 64 (images/s), with
torch.utils.benchmark's Timer (warm-up, median of repeats), all interleaved. Ends with
`ratio=` eager ms / .pt2 ms at batch 1 for the first model.

    python benchmarks/export_latency.py [--threads 2] [--budget 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.export import Packaged, batch_dim, compile_aoti  # noqa: E402
from trainer.config import from_dict  # noqa: E402
from trainer.models import build_model  # noqa: E402

# model, width, side, channels: the quickstart's ResNet9 on digits, a CIFAR ResNet-18, a ResNet-50 at 128 px
CASES = [("resnet9", 16, 16, 1), ("resnet18_cifar", 64, 32, 3), ("resnet50", 64, 128, 3)]


def runners(model_name: str, width: int, side: int, channels: int, folder: Path, aoti: bool = True) -> dict:
    model = build_model(from_dict({"model": model_name, "width": width}), 10, channels).eval()
    packaged = Packaged(model, [0.5] * channels, [0.25] * channels, side, side).eval()
    example = torch.zeros(2, channels, side, side, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(packaged, example, check_trace=False)
        scripted = torch.jit.freeze(scripted.eval())
    exported = torch.export.export(packaged, (example,), dynamic_shapes=batch_dim())
    torch.export.save(exported, str(folder / "m.pt2"))
    program = torch.export.load(str(folder / "m.pt2")).module()
    found = {"eager": lambda x: packaged(x), "pt2": lambda x: program(x), "torchscript": lambda x: scripted(x)}
    if aoti:
        found["aoti"] = compile_aoti(exported, folder / f"{model_name}_aoti.pt2")
    try:
        import onnxruntime

        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(packaged, (example,), str(folder / "m.onnx"), input_names=["images"],
                              dynamic_shapes=batch_dim(), dynamo=True)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(folder / "m.onnx"), options, providers=["CPUExecutionProvider"])
        found["onnxruntime"] = lambda x: session.run(None, {"images": x.numpy()})[0]
    except ImportError:
        print("  onnxruntime not installed: pip install -e '.[onnx]'")
    return found


def seconds(run, batch: torch.Tensor, budget: float) -> float:
    with torch.no_grad():
        return Timer("run(x)", globals={"run": run, "x": batch}).blocked_autorange(min_run_time=budget).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of repeats per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke-test", action="store_true")
    args = parser.parse_args()
    if args.smoke_test:
        args.budget, args.rounds = 0.05, 1
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"median of {args.rounds} interleaved rounds")
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, width, side, channels in CASES[:1] if args.smoke_test else CASES:
            runs = runners(model_name, width, side, channels, Path(tmp), aoti=not args.smoke_test)
            one = torch.randint(0, 256, (1, channels, side, side), dtype=torch.uint8)
            many = torch.randint(0, 256, (64, channels, side, side), dtype=torch.uint8)
            results = {name: ([], []) for name in runs}
            for _ in range(args.rounds):
                for name, run in runs.items():
                    results[name][0].append(seconds(run, one, args.budget))
                    results[name][1].append(seconds(run, many, args.budget))
            print(f"\n{model_name} {side}x{side}x{channels}      ms/image (batch 1)   images/s (batch 64)")
            eager_one = sorted(results["eager"][0])[len(results["eager"][0]) // 2]
            for name, (ones, manys) in results.items():
                s1, s64 = sorted(ones)[len(ones) // 2], sorted(manys)[len(manys) // 2]
                print(f"  {name:<14}{s1 * 1e3:>18.3f} ({eager_one / s1:.2f}x){64 / s64:>16,.0f}")
                if first is None and name == "pt2":
                    first = eager_one / s1
    print(f"ratio={first:.2f}")


if __name__ == "__main__":
    main()
