"""What a plan says it costs before it runs: the image counts of every data set, the price
and GPU tables, the instance type read from a cluster config, ASHA's expected share of the
epochs, and the dry run's money."""

import json
from pathlib import Path

import fakedata
import pytest
from conftest import preset
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.prices import GPUS, INSTANCES, PRICE_SOURCES, worker_of
from trainer.catalog import BY_NAME, DATASETS, split_sizes
from trainer.config import TrainConfig, from_dict

ROOT = Path(__file__).resolve().parents[1]


def test_every_data_set_has_its_image_counts():
    for info in DATASETS:
        if info.name in ("synthetic", "imagefolder"):  # counted from the config and the folder
            assert info.images == (0, 0, 0)
            continue
        train, val, test = split_sizes(info, 0.1)
        assert train >= val > 0 and test > 0, info.name
    assert split_sizes(BY_NAME["cifar10"], 0.1) == (45000, 5000, 10000)
    assert split_sizes(BY_NAME["flowers102"], 0.1) == (1020, 1020, 6149)


@pytest.mark.parametrize("config", [dict(dataset="digits"), dict(dataset="synthetic", synthetic_samples=200)])
def test_the_counts_are_the_loader_s_own(config):
    from trainer.datasets import load_data

    config = from_dict({**config, "image_size": 16}, base=TrainConfig())
    data = load_data(config)
    loaded = (len(data.train.labels), len(data.val.labels), len(data.test.labels))
    counts = (config.synthetic_samples, 0, 0) if config.dataset == "synthetic" else None
    expected = split_sizes(BY_NAME[config.dataset], config.val_fraction, counts)
    assert all(abs(a - b) <= 10 for a, b in zip(loaded, expected)), (loaded, expected)  # a class each, at most
    assert sum(loaded) == sum(expected)


@pytest.mark.parametrize("layout", ["flat", "train-val"])
def test_an_image_folder_is_counted_as_its_loader_splits_it(tmp_path, layout):
    from trainer.datasets import count_images, load_data

    root = tmp_path / "folder"
    classes = ["a", "b", "c"]
    if layout == "flat":
        fakedata.class_folders(root, classes, per_class=20)
    else:
        fakedata.class_folders(root / "train", classes, per_class=20)
        fakedata.class_folders(root / "val", classes, per_class=4)
    config = from_dict({"dataset": "imagefolder", "data_dir": str(root), "image_size": 16}, base=TrainConfig())
    data = load_data(config)
    loaded = (len(data.train.labels), len(data.val.labels), len(data.test.labels))
    counted = count_images(config)
    assert counted is not None and sum(counted) == sum(loaded)
    assert all(abs(a - b) <= len(classes) for a, b in zip(counted, loaded)), (counted, loaded)
    assert count_images(from_dict({"data_dir": str(tmp_path / "none")}, base=config)) is None


def test_the_price_table_is_dated_sourced_and_knows_each_gpu():
    import sweeps.prices as prices

    assert prices.PRICES_AS_OF and prices.GPU_SOURCE and prices.SUSTAINED_SOURCE
    clouds = {i.cloud for i in INSTANCES.values()}
    assert clouds == set(PRICE_SOURCES) == {"aws", "gcp", "azure"}
    for instance in INSTANCES.values():
        assert instance.gpu in GPUS and instance.gpus >= 1
        assert 0 < instance.spot < instance.on_demand, instance.name  # spot is the cheaper market


def test_the_shipped_cluster_config_names_its_spot_gpu_worker(tmp_path):
    worker = worker_of(ROOT / "cluster.yaml")
    assert worker is not None and worker.instance == "g5.2xlarge" and worker.spot
    assert worker.instance in INSTANCES
    gcp = tmp_path / "gcp.yaml"
    gcp.write_text(json.dumps({"head_node_type": "head", "available_node_types": {
        "head": {"node_config": {"machineType": "n2-standard-8"}},
        "gpu": {"resources": {"GPU": 1}, "node_config": {
            "machineType": "zones/us-central1-a/machineTypes/g2-standard-8",
            "scheduling": {"provisioningModel": "SPOT"}}},
    }}))
    found = worker_of(gcp)
    assert found is not None and found.instance == "g2-standard-8" and found.spot
    azure = tmp_path / "azure.yaml"
    azure.write_text(json.dumps({"head_node_type": "head", "available_node_types": {
        "head": {"node_config": {"azure_arm_parameters": {}}},
        "gpu": {"node_config": {"vm_size": "Standard_NC24ads_A100_v4"}}}}))
    found = worker_of(azure)
    assert found is not None and found.instance == "Standard_NC24ads_A100_v4" and not found.spot
    assert worker_of(tmp_path / "missing.yaml") is None


def test_asha_s_expected_share_matches_its_replay_over_recorded_curves(tmp_path):
    """The estimate replays ASHA over curves of random quality; on the quickstart's 48 recorded
    curves the same replay gives about the same share, for every pair the recording can judge."""
    import dataclasses
    import statistics

    from sweeps.estimate import asha_share
    from sweeps.planner import make_plan
    from sweeps.presets import load_preset
    from sweeps.sim.asha import Curve, many_orders

    data = json.loads((ROOT / "benchmarks" / "data" / "quickstart_fifo48.json").read_text())
    curves = [Curve(values, seconds) for values, seconds in data["curves"]]
    plan = make_plan(load_preset("quickstart"), overrides=[], samples=12, concurrency=2, gpus=None, cpus=None,
                     storage=str(tmp_path), name="q", seed=0)
    for grace, rf in ((1, 2), (1, 8), (2, 4)):
        recorded = statistics.median(r.share for r in many_orders(curves, 12, 2, grace, rf, orders=200))
        median, low, high = asha_share(dataclasses.replace(plan, grace_period=grace, reduction_factor=rf))
        assert low < median < high and abs(median - recorded) < 0.06, (grace, rf, median, recorded)
    assert asha_share(dataclasses.replace(plan, early_stopping=False)) == (1.0, 1.0, 1.0)


def test_the_dry_run_prints_money_for_the_cluster_s_instance_on_demand_and_spot(monkeypatch):
    monkeypatch.chdir(ROOT)  # where cluster.yaml is
    result = CliRunner().invoke(app, ["run", "flowers-r50", "--dry-run"])
    assert result.exit_code == 0, result.output
    cost = next(line for line in result.output.splitlines() if line.strip().startswith("cost"))
    assert "g5.2xlarge (cluster.yaml, spot)" in cost and "on demand" in cost and "spot" in cost
    assert cost.count("$") >= 6, cost  # both prices, then at most and expected in both markets
    assert "aws.amazon.com" in result.output and "NVIDIA" in result.output  # both tables' sources
    assert "6,149 test images" in result.output  # flowers102's own test split
    other = CliRunner().invoke(app, ["run", "flowers-r50", "--dry-run", "--instance", "p4d.24xlarge"])
    assert other.exit_code == 0 and "8 A100" in other.output
    bigger = float(cost.split("at most $")[1].split()[0].replace(",", ""))
    p4d = next(line for line in other.output.splitlines() if line.strip().startswith("cost"))
    assert float(p4d.split("at most $")[1].split()[0].replace(",", "")) != bigger


def test_a_cpu_plan_costs_its_price_per_cpu_hour_and_bad_prices_are_refused(tmp_path):
    path = preset(tmp_path, trials=4, epochs=2)
    cheap = CliRunner().invoke(app, ["run", path, "--dry-run", "--price-per-hour", "1"])
    dear = CliRunner().invoke(app, ["run", path, "--dry-run", "--price-per-hour", "10"])
    assert cheap.exit_code == dear.exit_code == 0, cheap.output
    assert "CPU-hours" in cheap.output and "measured" in cheap.output

    def most(output):
        line = next(line for line in output.splitlines() if line.strip().startswith("cost"))
        return float(line.split("at most $")[1].split(",")[0])

    assert most(dear.output) == pytest.approx(10 * most(cheap.output), rel=0.5)  # the CPU speed is timed twice
    for argv, fragment in ((["--price-per-hour", "0"], "--price-per-hour 0"), (["--price-per-hour", "nan"], "nan"),
                           (["--instance", "x1.fake"], "--instance x1.fake")):
        bad = CliRunner().invoke(app, ["run", path, "--dry-run", *argv])
        assert bad.exit_code == 2 and fragment in bad.output and "Traceback" not in bad.output
