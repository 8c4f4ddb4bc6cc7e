"""What GPU time costs and how fast a GPU trains: the tables behind a plan's estimate in money.

Two tables ship with the package, each dated and with its source named:
- `INSTANCES`: hourly prices of the cloud instance types a `cluster.yaml` is likely to name, on
  demand and spot, with the GPUs each holds. Spot prices move by the hour and by zone: the
  figures here are typical ones at the date given, so a plan says so, and a user's own figure
  (`--price-per-hour`) wins.
- `GPUS`: each GPU's dense fp16/bf16 tensor peak from its maker's datasheet. A ResNet trains at
  a fraction of it: `SUSTAINED_SHARE`, what NVIDIA's published ResNet-50 training figure on an
  A100 reaches (2,470 img/s x 24.6 GFLOP per training image = 61 TFLOP/s of its 312).

A sweep's instance type is the one `--instance` names, else the GPU worker type of the
`cluster.yaml` it runs on (this folder's, or the copy Ray leaves on a cluster's head,
`~/ray_bootstrap_config.yaml`). Imports only yaml, and that only inside a function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRICES_AS_OF = "2025-06"
PRICE_SOURCES = {
    "aws": "aws.amazon.com/ec2/pricing/on-demand and aws.amazon.com/ec2/spot/pricing (us-east-1, Linux)",
    "gcp": "cloud.google.com/compute/vm-instance-pricing and cloud.google.com/compute/gpus-pricing (us-central1)",
    "azure": "azure.microsoft.com/pricing/details/virtual-machines/linux (East US, pay as you go and spot)",
}
GPU_SOURCE = "NVIDIA datasheets: dense fp16/bf16 tensor peak, without sparsity"
SUSTAINED_SOURCE = ("NVIDIA DeepLearningExamples, ResNet-50 mixed-precision training on one A100: "
                    "2,470 img/s x 24.6 GFLOP = 61 TFLOP/s of 312")
SUSTAINED_SHARE = 0.195  # of a GPU's peak that ResNet training reaches (SUSTAINED_SOURCE)


@dataclass(frozen=True)
class Gpu:
    name: str
    peak_tflops: float  # dense fp16/bf16 tensor TFLOP/s (GPU_SOURCE)

    @property
    def training_flops(self) -> float:
        """FLOP/s a ResNet's training sustains on it, as assumed for an estimate."""
        return self.peak_tflops * 1e12 * SUSTAINED_SHARE


GPUS = {g.name: g for g in (
    Gpu("T4", 65), Gpu("V100", 125), Gpu("A10G", 125),  # A10G: AWS's A10, the A10 datasheet's figure
    Gpu("A10", 125), Gpu("L4", 121), Gpu("L40S", 362), Gpu("A100", 312), Gpu("H100", 989), Gpu("H200", 989),
)}


@dataclass(frozen=True)
class Instance:
    name: str  # the cloud's instance (machine, VM size) type, as cluster.yaml names it
    cloud: str  # aws | gcp | azure
    gpu: str  # a key of GPUS
    gpus: int  # GPUs it holds
    on_demand: float  # USD per hour (PRICE_SOURCES, PRICES_AS_OF)
    spot: float  # USD per hour, a typical spot (preemptible) price at PRICES_AS_OF: it moves

    def per_gpu_hour(self, spot: bool) -> float:
        return (self.spot if spot else self.on_demand) / self.gpus


INSTANCES = {i.name: i for i in (
    Instance("g4dn.xlarge", "aws", "T4", 1, 0.526, 0.21),
    Instance("g4dn.2xlarge", "aws", "T4", 1, 0.752, 0.30),
    Instance("g4dn.12xlarge", "aws", "T4", 4, 3.912, 1.60),
    Instance("g5.xlarge", "aws", "A10G", 1, 1.006, 0.40),
    Instance("g5.2xlarge", "aws", "A10G", 1, 1.212, 0.48),
    Instance("g5.4xlarge", "aws", "A10G", 1, 1.624, 0.65),
    Instance("g5.12xlarge", "aws", "A10G", 4, 5.672, 2.30),
    Instance("g6.xlarge", "aws", "L4", 1, 0.805, 0.35),
    Instance("g6.2xlarge", "aws", "L4", 1, 0.978, 0.42),
    Instance("g6e.xlarge", "aws", "L40S", 1, 1.861, 0.75),
    Instance("p3.2xlarge", "aws", "V100", 1, 3.06, 0.92),
    Instance("p3.8xlarge", "aws", "V100", 4, 12.24, 3.70),
    Instance("p4d.24xlarge", "aws", "A100", 8, 21.96, 9.80),
    Instance("p5.48xlarge", "aws", "H100", 8, 55.04, 25.00),
    Instance("g2-standard-4", "gcp", "L4", 1, 0.707, 0.283),
    Instance("g2-standard-8", "gcp", "L4", 1, 0.854, 0.341),
    Instance("a2-highgpu-1g", "gcp", "A100", 1, 3.673, 1.469),
    Instance("a2-ultragpu-1g", "gcp", "A100", 1, 5.069, 2.028),
    Instance("a3-highgpu-8g", "gcp", "H100", 8, 88.49, 29.20),
    Instance("Standard_NC4as_T4_v3", "azure", "T4", 1, 0.526, 0.16),
    Instance("Standard_NV36ads_A10_v5", "azure", "A10", 1, 3.20, 1.05),
    Instance("Standard_NC6s_v3", "azure", "V100", 1, 3.06, 0.92),
    Instance("Standard_NC24ads_A100_v4", "azure", "A100", 1, 3.673, 1.47),
    Instance("Standard_ND96isr_H100_v5", "azure", "H100", 8, 98.32, 39.33),
)}

def usd(value: float) -> str:
    """Money as the plans, progress line, status and report print it: cents from $1 up, three
    figures below (a CPU sweep's $0.00134 is not $0.00)."""
    return f"${value:,.2f}" if abs(value) >= 1 or value == 0 else f"${value:.3g}"


# The keys of a node type's node_config that name its instance type, per cloud provider.
INSTANCE_KEYS = ("InstanceType", "machineType", "vm_size", "instance_type")
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # where `ray up` leaves cluster.yaml on the head


@dataclass(frozen=True)
class ClusterWorker:
    """The GPU worker node type a Ray cluster config names."""
    instance: str  # its instance type
    spot: bool  # asked for on the spot market (AWS MarketType spot, GCP SPOT or preemptible, Azure Spot)
    source: str  # the config file it was read from


def worker_of(cluster_yaml: str | Path) -> ClusterWorker | None:
    """The GPU worker node type of a Ray cluster config (the first node type besides the head
    that names an instance type); None when the file is missing or names none."""
    import yaml

    try:
        config = yaml.safe_load(Path(cluster_yaml).expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    types = config.get("available_node_types") if isinstance(config, dict) else None
    if not isinstance(types, dict):
        return None
    for name, spec in types.items():
        node = (spec.get("node_config") if isinstance(spec, dict) else None) or {}
        found = next((node[k] for k in INSTANCE_KEYS if isinstance(node.get(k), str)), None)
        if name == config.get("head_node_type") or not found:
            continue
        market = str((node.get("InstanceMarketOptions") or {}).get("MarketType", "")).lower()
        scheduling = node.get("scheduling") or {}
        spot = (market == "spot" or str(scheduling.get("provisioningModel", "")).upper() == "SPOT"
                or bool(scheduling.get("preemptible")) or str(node.get("priority", "")).lower() == "spot")
        return ClusterWorker(found.rsplit("/", 1)[-1], spot, str(cluster_yaml))  # GCP may give a URL
    return None


def find_worker(cluster_yaml: str | None = None) -> ClusterWorker | None:
    """The worker of `cluster_yaml`, else of ./cluster.yaml, else of the copy on a cluster's head."""
    for path in ([cluster_yaml] if cluster_yaml else ["cluster.yaml", BOOTSTRAP_CONFIG]):
        found = worker_of(path)
        if found:
            return found
    return None


def plan_price(instance: str, price_per_hour: float | None, worker: ClusterWorker | None) -> tuple[float, str]:
    """(USD per GPU-hour, or per CPU-hour for CPU trials; where it comes from) for a sweep on
    `instance`: the user's figure, else the table's for the instance in the market its cluster
    config asks for (spot where `worker` is that instance on spot, else on demand); (0, "") when
    neither is known."""
    if price_per_hour:
        return float(price_per_hour), "--price-per-hour"
    known = INSTANCES.get(instance)
    if known is None:
        return 0.0, ""
    spot = bool(worker and worker.instance == instance and worker.spot)
    market = "spot, a typical price" if spot else "on demand"
    return known.per_gpu_hour(spot), f"{instance} {market}, sweeps/prices.py of {PRICES_AS_OF}"
