"""Population-based training (sweeps.engine.population): values that change between epochs
(trainer `epoch_values`), the exploit done in the run folder, and a PBT sweep on S3 whose
driver is SIGKILLed mid-population and resumed, then its schedule replayed by `sweep train`."""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import crash, preset, tiny
from typer.testing import CliRunner

from sweeps.presets import PresetError, load_preset
from trainer.config import ConfigError
from trainer.loop import train


def epochs_of(config, resume_from=None):
    rows, saved = [], {}

    def report(metrics, save):
        rows.append(metrics)
        saved[metrics["epoch"]] = save

    train(config, report=report, resume_from=resume_from)
    return rows, saved


def test_epoch_values_set_each_epochs_values_and_a_resume_takes_new_ones(tmp_path):
    config = tiny(epochs=4, epoch_values="2:lr=0.01,weight_decay=0.001;4:lr=0.2,label_smoothing=0.1")
    rows, _ = epochs_of(config)
    assert [r["epoch_lr"] for r in rows] == [0.05, 0.01, 0.01, 0.2]
    assert [r["epoch_weight_decay"] for r in rows] == [config.weight_decay, 0.001, 0.001, 0.001]
    assert [r["epoch_label_smoothing"] for r in rows] == [0.0, 0.0, 0.0, 0.1]
    # a checkpoint resumed with a new lr (the constant schedule) trains on with it: what an exploit does
    rows, saved = epochs_of(tiny(epochs=3))
    saved[2](tmp_path)
    later, _ = epochs_of(tiny(epochs=3, lr=0.02, momentum=0.5), resume_from=tmp_path)
    assert [r["epoch"] for r in later] == [3] and later[0]["epoch_lr"] == 0.02 and later[0]["epoch_momentum"] == 0.5
    with pytest.raises(ConfigError, match="constant"):  # where the schedule sets lr, a new one is refused
        epochs_of(tiny(epochs=3, scheduler="onecycle", lr=0.02), resume_from=tmp_path)


@pytest.mark.parametrize("text, says", [
    ("3-lr=0.1", "is not EPOCH:key=value"), ("2:batch_size=8", "give key=value with a key of"),
    ("2:lr=fast", "epoch 2: lr='fast' must be a number"), ("9:lr=0.1", "past epochs=4"),
    ("2:lr=0.1;2:lr=0.2", "twice"), ("2:label_smoothing=1.5", "epoch 2: label_smoothing=1.5 must be below 1"),
])
def test_bad_epoch_values_are_one_line_naming_the_part(text, says):
    with pytest.raises(ConfigError, match=says):
        tiny(epochs=4, epoch_values=text)
    with pytest.raises(ConfigError, match="scheduler=constant"):
        tiny(epochs=4, scheduler="onecycle", epoch_values="2:lr=0.1")


def pbt_preset(tmp_path, trials=4, epochs=6, **sweep):
    path = preset(tmp_path, trials=trials, epochs=epochs,
                  sweep={"scheduler": "pbt", "perturbation_interval": 2, "quantile": 0.5, "concurrency": 0, **sweep})
    data = yaml.safe_load(Path(path).read_text())
    data["train"]["scheduler"] = "constant"
    data["search"]["lr"] = {"loguniform": [1.0e-3, 0.5]}
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("change, says", [
    ({"search": {"batch_size": {"choice": [32, 64]}}}, "changes only lr, weight_decay, momentum, label_smoothing"),
    ({"search": {"momentum": {"choice": [0.8, 0.9]}}}, "within a range"),
    ({"train": {"scheduler": "onecycle"}}, "use train.scheduler: constant"),
    ({"sweep": {"concurrency": 2}}, "leave concurrency out"),
    ({"sweep": {"quantile": 0.7}}, "quantile=0.7 must be above 0 and at most 0.5"),
    ({"sweep": {"perturbation_interval": 6}}, "below train.epochs=6"),
    ({"sweep": {"scheduler": "hyperband"}}, "allowed: asha, pbt, pb2"),
])
def test_a_population_preset_that_cannot_work_is_refused_in_one_line(tmp_path, change, says):
    path = Path(pbt_preset(tmp_path))
    data = yaml.safe_load(path.read_text())
    for section, values in change.items():
        data[section].update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(PresetError, match=says):
        load_preset(str(path))


@pytest.mark.parametrize("options, says", [
    (["--concurrency", "1"], "--concurrency 1: pbt trains its members as resources allow"),
    (["--set", "lr=0.1"], "--set lr: pbt changes lr between epochs"),
    (["--samples", "1"], "--samples 1: pbt needs a population of at least 2"),
    (["--max-epochs", "2"], "decides every 2 epochs, so train more than that"),
])
def test_command_line_values_a_population_cannot_use_are_one_line(tmp_path, options, says):
    from sweeps.cli import app

    result = CliRunner().invoke(app, ["run", pbt_preset(tmp_path), "--dry-run", *options])
    assert result.exit_code != 0 and says in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_population_run_is_no_recording_nor_a_warm_start_and_an_asha_run_has_no_schedule(tmp_path):
    """A PBT member's curve is a lineage (weights and values swapped as it trained): never simulated as
    one configuration's curve, nor warm-started from; `analysis schedule` of an ASHA run says why not."""
    from conftest import handmade_run

    from analysis.cli import app as analysis_app
    from sweeps.cli import app

    _, population = handmade_run(tmp_path, "population", scheduler="pbt", perturbation_interval=2, quantile=0.25,
                                 early_stopping=False)
    _, asha = handmade_run(tmp_path, "asha")
    simulated = CliRunner().invoke(app, ["simulate", str(population)])
    assert simulated.exit_code != 0 and "its curves are lineages" in simulated.output, simulated.output
    warm = CliRunner().invoke(app, ["run", "quickstart", "--warm-start", str(population), "--dry-run"])
    assert warm.exit_code != 0 and f"analysis schedule {population}" in warm.output, warm.output
    shown = CliRunner().invoke(analysis_app, ["schedule", str(asha)])
    assert shown.exit_code != 0 and "is not population-based training" in shown.output
    assert len(shown.output.strip().splitlines()) == 1


def test_an_exploit_copies_the_donors_newest_whole_checkpoint_and_never_a_donor_without_one(tmp_path):
    import random

    from sweeps.engine.population import Chooser, Space, exploit
    from sweeps.engine.trial import TrialFolder
    from sweeps.search import Param

    run = tmp_path / "run"
    space = Space({"lr": Param("loguniform", [1e-3, 0.5])})
    chooser = Chooser(["lr"], space, random.Random(0), bayesian=False, observations=[], epoch_unit=0.5)
    for name, lr in (("trial_donor", 0.05), ("trial_member", 0.3)):
        _, saved = epochs_of(tiny(epochs=3, lr=lr, seed=1 if name == "trial_donor" else 2))
        for epoch, save in saved.items():
            if name == "trial_member" or epoch < 3:  # the donor is an epoch behind
                TrialFolder(str(run), name).write(epoch, save)
    (run / "trial_donor" / "checkpoint_000002" / "checkpoint.pt").write_bytes(b"cut short")  # not whole
    (run / "trial_empty").mkdir()
    assert exploit(str(run), "trial_member", "trial_empty", "empty", chooser) is None
    assert TrialFolder(str(run), "trial_member").epochs() == [1, 2, 3], "nothing written for a donor without one"

    epoch, values = exploit(str(run), "trial_member", "trial_donor", "donor", chooser)
    assert epoch == 1, "the newest checkpoint that loads"
    assert values["lr"] in (0.05 * 0.8, 0.05 * 1.2) or 1e-3 <= values["lr"] <= 0.5
    member = TrialFolder(str(run), "trial_member")
    assert member.epochs() == [1], "the member's own checkpoints are gone"
    took = member.load_newest()
    given = torch.load(run / "trial_donor" / "checkpoint_000001" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(took["model"][k], given["model"][k]) for k in given["model"]), "the donor's weights"
    assert took["config"]["lr"] == values["lr"] and took["lineage"] == [[1, "donor"]]
    assert took["history"] == given["history"]


def test_pb2_bets_on_the_values_whose_gains_were_highest_and_is_random_before_it_has_data():
    import random

    from sweeps.engine.population import Space, bandit_choice
    from sweeps.search import Param

    space = Space({"lr": Param("loguniform", [1e-3, 1.0]), "weight_decay": Param("uniform", [0.0, 0.01])})
    rng = random.Random(0)
    # gains peak at lr's place 0.8 (lr ~ 0.25), whatever the weight decay, seen densely over the space
    observations = [(0.5, [u, w], -((u - 0.8) ** 2)) for u in [i / 12 for i in range(13)] for w in (0.1, 0.5, 0.9)]
    picks = [bandit_choice(observations, 0.5, ["lr", "weight_decay"], space, rng) for _ in range(5)]
    assert all(abs(space.unit("lr", p["lr"]) - 0.8) < 0.15 for p in picks), picks
    assert all(0 <= p["weight_decay"] <= 0.01 for p in picks)
    early = [space.unit("lr", bandit_choice([], 0.5, ["lr", "weight_decay"], space, rng)["lr"]) for _ in range(20)]
    assert max(early) - min(early) > 0.5, "no data yet: drawn across the range"


class FakeTrial:
    def __init__(self, trial_id, folder):
        from types import SimpleNamespace

        self.trial_id, self.status = trial_id, "RUNNING"
        self.storage = SimpleNamespace(trial_fs_path=str(folder))

    def is_finished(self):
        return self.status in ("TERMINATED", "ERROR")


def test_a_member_is_never_sent_back_to_a_donor_behind_it_and_yields_to_those_behind(tmp_path):
    """With members taking turns, a member ahead that took a better-scoring member's weights from
    an earlier epoch would go back at every decision and the population never get on."""
    from types import SimpleNamespace

    from sweeps.engine.population import Population
    from sweeps.engine.trial import TrialFolder
    from sweeps.search import Param

    run = tmp_path / "run"
    ahead, behind = FakeTrial("ahead", run / "trial_ahead"), FakeTrial("behind", run / "trial_behind")
    controller = SimpleNamespace(get_trials=lambda: [ahead, behind])
    for trial, seed in ((ahead, 1), (behind, 2)):
        _, saved = epochs_of(tiny(epochs=2, seed=seed))
        for epoch, save in saved.items():
            TrialFolder(str(run), f"trial_{trial.trial_id}").write(epoch, save)
    population = Population("val_acc", "max", interval=2, quantile=0.5, space={"lr": Param("loguniform", [1e-3, 1])},
                            run_path=str(run), max_t=8, seed=0)

    def report(trial, epoch, value):
        return population.on_trial_result(controller, trial, {"epoch": epoch, "val_acc": value, "epoch_lr": 0.05})

    behind.status = "PENDING"
    assert [report(ahead, e, 0.5) for e in (1, 2)] == ["CONTINUE", "PAUSE"], "yields to the one behind"
    ahead.status, behind.status = "PAUSED", "RUNNING"
    assert [report(behind, e, 0.9) for e in (1, 2)] == ["CONTINUE", "CONTINUE"], "the best takes from no one"
    ahead.status, behind.status = "RUNNING", "PAUSED"
    assert [report(ahead, e, 0.5) for e in (3, 4)] == ["CONTINUE", "PAUSE"]
    assert population.exploits == [], "never back to epoch 2 from epoch 4"
    assert TrialFolder(str(run), "trial_ahead").epochs() == [1, 2]
    ahead.status, behind.status = "PAUSED", "RUNNING"
    assert [report(behind, e, 0.4) for e in (3, 4)] == ["CONTINUE", "PAUSE"], "now the lower at epoch 4"
    assert [e["donor"] for e in population.exploits] == ["ahead"] and population.exploits[0]["epoch"] == 2


def test_an_exploit_meeting_a_store_that_is_away_gives_up_in_seconds_and_changes_nothing(tmp_path, monkeypatch):
    """PBT's checkpoint traffic on S3 (syne-tune#582): a store that does not answer keeps the member
    on its own weights this time (the driver says so), never a member half-copied."""
    import random

    from faultproxy import FaultProxy

    from sweeps.engine.population import Chooser, Space, exploit
    from sweeps.engine.trial import TrialFolder
    from sweeps.runfolder.storage import StoreError
    from sweeps.search import Param
    from tools.localcluster import CREDENTIALS, S3Server

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    server = S3Server(tmp_path / "s3").start()
    proxy = FaultProxy(server.port)
    try:
        run = f"s3://{server.bucket}/runs/r?endpoint_override={proxy.endpoint}&scheme=http"
        for name, seed in (("trial_donor", 1), ("trial_member", 2)):
            _, saved = epochs_of(tiny(epochs=2, seed=seed))
            for epoch, save in saved.items():
                TrialFolder(run, name).write(epoch, save)
        chooser = Chooser(["lr"], Space({"lr": Param("loguniform", [1e-3, 0.5])}), random.Random(0), bayesian=False,
                          observations=[], epoch_unit=0.5)
        proxy.down()
        started = time.monotonic()
        with pytest.raises(StoreError):
            exploit(run, "trial_member", "trial_donor", "donor", chooser, wait=2)
        assert time.monotonic() - started < 30
        proxy.up()
        member = TrialFolder(run, "trial_member")
        assert member.epochs() == [1, 2] and member.load_newest()["lineage"] == []
    finally:
        proxy.close()
        server.stop()


@pytest.mark.slow
def test_a_pbt_sweep_on_s3_resumed_after_sigkill_keeps_each_members_values_and_its_schedule_replays(tmp_path):
    """The driver is killed once a member has taken another's weights; `sweep resume` goes on with
    every member's values of its newest checkpoint (not the ones it was sampled with). Then the
    best member's schedule, as `analysis schedule` prints it, is trained by `sweep train` with
    the same learning rate at every epoch."""
    from analysis.cli import app as analysis_app
    from sweeps.runfolder.results import parse_results
    from sweeps.runfolder.run import load_run
    from tools.localcluster import CREDENTIALS, S3Server
    from trainer.checkpoint import load_checkpoint

    server = S3Server(tmp_path / "s3").start()
    env = {**os.environ, **CREDENTIALS, "PYTHONUNBUFFERED": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    fs = server.filesystem()
    run_dir = f"{server.bucket}/runs/pbt"
    uri = server.uri("runs/pbt")
    path = pbt_preset(tmp_path, trials=3, epochs=8)  # 1 of 3 takes another's weights every 2 epochs

    def folders() -> dict[str, list[dict]]:
        import pyarrow.fs

        found = {}
        for info in fs.get_file_info(pyarrow.fs.FileSelector(run_dir, allow_not_found=True)):
            if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("trial_"):
                try:
                    with fs.open_input_stream(f"{info.path}/result.json") as f:
                        found[info.base_name] = parse_results(f.read().decode(), keep_repeats=True)
                except (FileNotFoundError, OSError):
                    found[info.base_name] = []
        return found

    try:
        driver = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "run", path, "--local", "--storage",
                                   server.uri("runs"), "--name", "pbt", "--seed", "2"], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.time() + 240
        exploited = False
        while time.time() < deadline and driver.poll() is None and not exploited:
            # the first sign of an exploit: the member's restart replays the epochs it inherited
            exploited = any(any(r.get("lineage") and int(r["epoch"]) < 6 for r in rows)
                            for rows in folders().values())
            time.sleep(0.3)
        crash(driver)  # its workers too: none writes a checkpoint after the state of record is read
        out = driver.communicate()[0]
        assert exploited, out[-3000:]
        # each member's state of record at the kill: its newest whole checkpoint
        os.environ.update(CREDENTIALS)
        from sweeps.engine.trial import TrialFolder

        at_kill = {}
        for name in folders():
            folder = TrialFolder(uri, name)
            state = folder.load_newest()
            if state is not None and int(state["epoch"]) < 8:
                at_kill[name] = (int(state["epoch"]), state["config"]["lr"], state.get("lineage", []))
        assert any(lineage for _, _, lineage in at_kill.values()), "a member with another's weights is unfinished"

        resumed = subprocess.run([sys.executable, "-m", "sweeps.cli", "resume", uri, "--local"], env=env,
                                 cwd=tmp_path, capture_output=True, text=True, timeout=400)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
        after = folders()
        for name, (epoch, lr, _) in at_kill.items():
            trained = [r for r in after[name] if not r.get("replayed") and int(r["epoch"]) == epoch + 1]
            assert trained and trained[-1]["epoch_lr"] == lr, f"{name} trained epoch {epoch + 1} with its values"
        sampled = {t["trial_id"]: t["lr"] for _, t in load_run(uri).trials.iterrows()}
        assert any(lr != sampled[name.removeprefix("trial_")] for name, (_, lr, _) in at_kill.items()), \
            "the values kept are the perturbed ones, not those sampled"

        run = load_run(uri)
        assert set(run.trials["status"]) == {"TERMINATED"} and set(run.trials["epochs_trained"]) == {8}
        # an exploited member's epochs up to the exploit are its donor's, as the donor reported them
        for name, rows in after.items():
            final = [r for r in rows if r.get("lineage")]
            if final:
                lineage = final[-1]["lineage"].split(";")
                taken, donor = lineage[-1].split(":")
                mine = {int(r["epoch"]): r["val_loss"] for r in run.history[run.history.trial_id == name[6:]]
                        .to_dict("records")}
                # the donor's rows of the weights it gave (its lineage then; it may have taken others' since)
                theirs = {int(r["epoch"]): r["val_loss"] for r in after[f"trial_{donor}"]
                          if str(r.get("lineage") or "") == ";".join(lineage[:-1])}
                assert all(mine[e] == theirs[e] for e in range(1, int(taken) + 1) if e in theirs), name

        shown = CliRunner().invoke(analysis_app, ["schedule", uri])
        assert shown.exit_code == 0, shown.output
        command = next(line for line in shown.output.splitlines() if line.startswith("sweep train "))
        member = shown.output.split()[3]
        args = shlex.split(command)[2:]
        replay = subprocess.run([sys.executable, "-m", "sweeps.cli", "train", *args, "--out", str(tmp_path / "re")],
                                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert replay.returncode == 0, replay.stderr[-2000:]
        replayed = [json.loads(line) for line in (tmp_path / "re" / "metrics.jsonl").read_text().splitlines()]
        lineage_rows = run.history[run.history.trial_id == member].sort_values("epoch")
        assert [r["epoch_lr"] for r in replayed] == list(lineage_rows["epoch_lr"]), shown.output
        assert load_checkpoint(tmp_path / "re")["config"]["epoch_values"] in command
        report = CliRunner().invoke(analysis_app, ["report", uri, "--gradcam-samples", "0", "--out",
                                                   str(tmp_path / "report")])
        assert report.exit_code == 0, report.output
        text = (tmp_path / "report" / "report.md").read_text()
        assert "## Population-based training" in text and (tmp_path / "report" / "population.png").is_file()
        assert f"trial `{member}`" in text and command in text
    finally:
        server.stop()
