"""The `analysis` command: tables, learning curves, Grad-CAM and the markdown report of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sweeps.console import OneLineErrors, show_warnings, user_errors

app = typer.Typer(help="Read a sweep's run folder: tables, curves, Grad-CAM, the markdown report.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  cls=OneLineErrors)



@app.callback()
def main() -> None:
    """Read a sweep's run folder: tables, curves, Grad-CAM, the markdown report."""
    show_warnings()


RunPath = Annotated[str, typer.Argument(help="Run folder (or s3:// / gs:// URI) that `sweep run` printed.")]
DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", help="Where the data set is on this machine, if not where the trials read it.")]


@app.command()
def table(run_path: RunPath,
          top: Annotated[int | None, typer.Option(help="Only the K best trials.")] = None,
          fmt: Annotated[str, typer.Option("--format", help="md (markdown) or csv.")] = "md",
          out: Annotated[Path | None, typer.Option("-o", "--out", help="Write to this file, not stdout.")] = None
          ) -> None:
    """A row per trial: id, status, epochs trained, best metric, and its parameters."""
    from .output import OutputError, check_output_file
    from .results import results_table

    with user_errors((OutputError,)):
        if fmt not in ("md", "csv"):
            raise typer.BadParameter("--format takes md or csv")
        if out is not None:
            check_output_file(out, "--out")
        frame = results_table(run_path, top=top)
        text = frame.to_csv(index=False) if fmt == "csv" else frame.to_markdown(index=False, floatfmt=".4g")
        if out is not None:
            out.write_text(text if text.endswith("\n") else text + "\n")
        else:
            typer.echo(text.rstrip("\n"))


@app.command()
def report(run_path: RunPath,
           out: Annotated[Path | None, typer.Option("-o", "--out", help="Folder of report.md and its images "
                                                                          "(default RUN_PATH/report, or "
                                                                          "./reports/NAME for a URI).")] = None,
           top: Annotated[int, typer.Option(help="Trials in the table and the learning curves.")] = 5,
           gradcam_samples: Annotated[int, typer.Option(help="Test images per Grad-CAM figure (0: none).")] = 4,
           data_dir: DataDirOption = None) -> None:
    """Write the markdown report: summary, table, curves, hyperparameters, test results, Grad-CAM."""
    from .output import OutputError
    from .report import ReportError, write_report

    with user_errors((ReportError, OutputError)):
        path = write_report(run_path, out, top=top, gradcam_samples=gradcam_samples, data_dir=data_dir)
    typer.echo(f"report: {path}")


@app.command()
def schedule(run_path: RunPath,
             trial: Annotated[str | None, typer.Option(help="The member whose schedule to print (default: the best).")]
             = None) -> None:
    """The schedule population-based training found (the best member's values at every epoch of
    its lineage), as a `sweep train` command and a preset's train section that replay it alone."""
    from sweeps.errors import RunFolderError, SweepError
    from sweeps.runfolder.run import load_run
    from sweeps.runfolder.schedule import found_schedule

    with user_errors((SweepError, RunFolderError)):
        run = load_run(run_path)
        found = found_schedule(run, trial)
    typer.echo(f"schedule of trial {found.trial_id} ({run.metric} {found.value:.4g}; its weights: "
               f"{found.describe_lineage()})")
    typer.echo(found.command(run))
    typer.echo("# or, in a preset:")
    typer.echo(found.snippet())


@app.command()
def curves(run_path: RunPath,
           out: Annotated[Path, typer.Option("-o", "--out", help="PNG file to write.")],
           top: Annotated[int, typer.Option(help="Trials to draw, best first.")] = 5) -> None:
    """Learning curves (train/val loss and accuracy) of the best trials, as one PNG."""
    from . import plots
    from .output import OutputError, check_output_file
    from .results import load_run

    with user_errors((OutputError,)):
        check_output_file(out, "--out")
        run = load_run(run_path)
        if run.history.empty:
            raise typer.BadParameter(f"{run_path}: no trial has reported an epoch yet")
        path = plots.learning_curves(run.history, list(run.ranked().head(top)["trial_id"]), out)
    typer.echo(f"curves: {path}")


@app.command()
def gradcam(run_path: RunPath,
            out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the PNG files.")],
            trial: Annotated[str | None, typer.Option(help="Trial id (default: the best).")] = None,
            images: Annotated[int, typer.Option(help="Test images per figure.")] = 4,
            data_dir: DataDirOption = None) -> None:
    """Grad-CAM maps of a trial's best checkpoint on test images."""
    import torch

    from .gradcam import denormalise
    from .output import OutputError, check_output_folder
    from .report import ReportError, gradcam_section
    from .results import load_run
    from .stats import confident_errors
    from .trained import evaluate_on_test, load_trained

    with user_errors((ReportError, OutputError)):
        check_output_folder(out, "--out")
        run = load_run(run_path)
        row = run.best(with_model=True) if trial is None else next(
            (r for _, r in run.trials.iterrows() if r["trial_id"] == trial), None)
        if row is None:
            raise ReportError(f"no trial {trial!r} in {run_path}; see `sweep status {run_path}`" if trial else
                              f"{run_path}: no trial has a checkpoint yet")
        if not row["checkpoint"]:
            raise ReportError(f"trial {row['trial_id']} kept no checkpoint")
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        ev = evaluate_on_test(load_trained(row["checkpoint"]), device, data_dir)
        out.mkdir(parents=True, exist_ok=True)
        pictures = denormalise(ev.inputs, ev.mean, ev.std)
        gradcam_section(ev, pictures, confident_errors(ev), out, images)
    typer.echo(f"grad-cam: {out}")


@app.command()
def export(run_path: RunPath,
           out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the model, meta.json and MODEL.md.")],
           fmt: Annotated[str, typer.Option("--format", help="pt2 (a torch.export program: torch alone), aoti "
                                                             "(that program compiled ahead of time for this CPU "
                                                             "and torch; needs g++), onnx (onnxruntime alone; the "
                                                             "onnx extra) or torchscript (deprecated by "
                                                             "PyTorch).")] = "pt2",
           trial: Annotated[str | None, typer.Option(help="Trial id (default: the best that fits the limits).")]
           = None,
           max_latency_ms: Annotated[float | None, typer.Option(
               help="The best trial whose inference at batch 1 took at most this many ms.")] = None,
           max_params: Annotated[float | None, typer.Option(
               help="The best trial with at most this many parameters.")] = None,
           mlflow: Annotated[str | None, typer.Option(
               help="Also log it as an MLflow model to this tracking URI (needs the mlflow extra).")] = None,
           data_dir: DataDirOption = None) -> None:
    """Export a trial's model with its preprocessing, checked against PyTorch on the test split."""
    import json

    from .export import DEPRECATED, META_FILE, ExportError, log_to_mlflow
    from .export import export as export_model
    from .output import OutputError

    with user_errors((ExportError, OutputError)):
        if mlflow is not None:
            import importlib.util

            if importlib.util.find_spec("mlflow") is None:  # before the export's work, not after
                raise ExportError("--mlflow needs the mlflow package: pip install -e '.[mlflow]' (or pip install "
                                  "mlflow)")
        if fmt in DEPRECATED:
            typer.echo(f"note: {DEPRECATED[fmt]}", err=True)
        check = export_model(run_path, out, fmt, trial, max_latency_ms, max_params, data_dir)
        if mlflow is not None:
            run_id = log_to_mlflow(mlflow, out, json.loads((out / META_FILE).read_text()))
    typer.echo(f"checked on {check['images']} {check['split']} images: largest probability difference "
               f"{check['max_difference']:.2g}, same top-1 answer {check['top1_agreement']:.1%}, accuracy "
               f"{check['accuracy']:.4f}")
    typer.echo(f"model: {out}")
    if mlflow is not None:
        typer.echo(f"mlflow: run {run_id} at {mlflow} (model: runs:/{run_id}/model)")


@app.command()
def predict(model: Annotated[str, typer.Argument(help="An export folder, or a run folder (its best trial).")],
            images: Annotated[list[Path], typer.Argument(help="Image files or folders of them.")],
            top_k: Annotated[int, typer.Option("--top-k", help="Classes per image.", min=1)] = 3,
            fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table") -> None:
    """Classify images; files that are not images are skipped with a warning (exit code 1)."""
    import sys

    import pandas as pd

    from .export import ExportError
    from .predict import image_files, load_classifier
    from .predict import predict as classify

    show_warnings()
    with user_errors((ExportError,)):
        if fmt not in ("table", "csv", "json"):
            raise ExportError(f"--format {fmt}: use table, csv or json")
        classifier = load_classifier(model)
        files = image_files(images)
        if sys.stderr.isatty() and len(files) > 64:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("classifying", total=len(files))
                rows, skipped = classify(classifier, files, top_k, lambda n: bar.advance(task, n))
        else:
            rows, skipped = classify(classifier, files, top_k)
    frame = pd.DataFrame(rows)
    if fmt == "json":
        typer.echo(frame.to_json(orient="records", indent=2) if rows else "[]")
    elif fmt == "csv":
        typer.echo(frame.to_csv(index=False).rstrip("\n"))
    elif rows:
        typer.echo(frame.to_markdown(index=False, floatfmt=".4f"))
    if skipped:
        typer.echo(f"{len(skipped)} of {len(files)} files skipped", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
