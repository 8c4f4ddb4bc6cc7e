"""cluster.yaml is a valid Ray cluster-launcher file (Ray's own schema) that exposes nothing."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    # what `ray up` does: merge the provider's defaults, then check against ray-schema.json
    prepared = prepare_config(load())
    validate_config(prepared)  # raises jsonschema.ValidationError on any unknown or malformed field
    assert not any("0.0.0.0" in c for c in prepared["head_start_ray_commands"]), "defaults did not leak in"


def test_a_cpu_head_and_autoscaling_gpu_workers_that_install_this_project():
    config = load()
    head = config["available_node_types"][config["head_node_type"]]
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert head["node_config"]["InstanceType"].startswith(("m", "c"))  # a CPU instance
    assert workers and all(w["node_config"]["InstanceType"].startswith(("g", "p")) for w in workers)
    assert all(w["min_workers"] == 0 and w["max_workers"] >= 1 for w in workers)
    assert "ray-ml" not in config["docker"]["image"] and config["docker"]["image"].endswith("-gpu")
    assert any("pip install" in c and "/home/ray/resweep" in c for c in config["setup_commands"])
    assert config["file_mounts"]["/home/ray/resweep"] == "."
    assert any("RESWEEP_STORAGE=s3://" in option for option in config["docker"]["run_options"])


def test_nothing_listens_publicly_and_token_auth_is_on_everywhere():
    config = load()
    text = (ROOT / "cluster.yaml").read_text()
    assert "0.0.0.0" not in "\n".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert any("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])
    ingress = config["provider"]["security_group"]["IpPermissions"]
    assert [(rule["FromPort"], rule["ToPort"]) for rule in ingress] == [(22, 22)], "SSH only from outside"
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command
    assert "-e RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert "/home/ray/.ray/auth_token" in config["file_mounts"]
    assert "auth_token:" not in text.replace("/home/ray/.ray/auth_token: ~/.ray/auth_token", ""), \
        "the token itself is never written in the file"
