"""What a grid's array tasks ask SLURM for (probe/launch/resources.py), from the real configs.

tests/test_slurm.py submits the printed command to a real GPU-less cluster; here every
encoder config is checked for the GPU decision, and the options for their flags.
"""

from __future__ import annotations

import math

import pytest
from conftest import compose_cfg, config_names

from probe.core.errors import ProbeError
from probe.encoders.kinds import KINDS
from probe.launch import resources
from probe.launch.resources import needs_gpu, task_resources
from probe.launch.sizes import KIND_WIDTH
from probe.solvers import memory

NO_NETWORK = {"pixels", "precomputed"}  # encoders whose features need no GPU
AUTO = {"gpus": "auto", "mem": "auto", "cpus": None, "time": None, "partition": None}


@pytest.mark.parametrize("encoder", config_names("encoder"))
def test_every_encoder_wants_a_gpu_unless_it_runs_no_network(encoder: str) -> None:
    auto = compose_cfg([f"encoder={encoder}", "device=auto"])
    assert needs_gpu(auto) == (encoder not in NO_NETWORK)
    assert not needs_gpu(compose_cfg([f"encoder={encoder}", "device=cpu", "probe=sklearn"]))
    assert needs_gpu(compose_cfg([f"encoder={encoder}", "device=cuda"]))
    assert needs_gpu(compose_cfg([f"encoder={encoder}", "device=cpu", "probe=cuml"]))
    assert not needs_gpu(compose_cfg([f"encoder={encoder}", "stage=probe"]))  # cached features


def test_a_cpu_grid_asks_for_no_gpu_and_the_cpu_default_memory() -> None:
    runs = [compose_cfg(["encoder=pixels"]), compose_cfg(["encoder=mlcd_l14", "device=cpu"])]
    assert task_resources(runs, AUTO).flags() == ["--gres=none", "--mem=16G", "--requeue"]


def test_one_gpu_run_makes_the_whole_array_ask_for_a_gpu() -> None:
    runs = [compose_cfg(["encoder=pixels"]), compose_cfg(["encoder=mlcd_l14"])]
    assert task_resources(runs, AUTO).flags() == ["--gres=gpu:1", "--mem=64G", "--requeue"]


def test_options_win_over_the_automatic_values() -> None:
    runs = [compose_cfg(["encoder=pixels"])]
    opts = {"gpus": 2, "mem": "32g", "cpus": 4, "time": "12:00:00", "partition": "a100"}
    assert task_resources(runs, opts).flags() == [
        "--gres=gpu:2", "--mem=32G", "--cpus-per-task=4", "--time=12:00:00",
        "--partition=a100", "--requeue",
    ]  # fmt: skip
    assert task_resources(runs, {**AUTO, "mem": 16000}).mem == "16000M"  # sbatch's unit: MB


@pytest.mark.parametrize(
    ("key", "value"), [("mem", "lots"), ("mem", "0G"), ("cpus", 0), ("gpus", "one")]
)
def test_bad_options_name_the_key_and_the_fix(key: str, value) -> None:
    with pytest.raises(ProbeError, match=f"resources.{key}="):
        task_resources([compose_cfg(["encoder=pixels"])], {**AUTO, key: value})


def test_the_memory_estimate_plugs_into_memory_gb(monkeypatch) -> None:
    """One function decides the memory; the task asks for the largest of its runs."""
    sizes = {"pixels": 3, "mlcd_l14": 40}
    monkeypatch.setattr(resources, "memory_gb", lambda run, *, gpu: sizes[run.encoder.name])
    runs = [compose_cfg(["encoder=pixels"]), compose_cfg(["encoder=mlcd_l14", "device=cpu"])]
    assert task_resources(runs, AUTO).mem == "40G"


IMAGENET_SPLITS = {"n_train": 1_231_167, "n_val": 50_000, "n_test": 50_000, "num_classes": 1000}


@pytest.mark.parametrize(
    ("overrides", "backend", "dim"),
    [(["encoder=mlcd_bigg14_224", "device=cpu", "stage=probe"], "torch", 1664),
     (["encoder=mlcd_l14", "device=cpu", "probe=sklearn"], "sklearn", 1024),
     (["encoder=dinov2_g14", "encoder.feature=last4", "stage=probe"], "torch", 5 * 1536)],
)  # fmt: skip
def test_memory_gb_is_the_probe_estimate_with_its_margin(overrides, backend, dim) -> None:
    """A CPU task probing ImageNet asks for the estimate x MARGIN, in GiB rounded up."""
    run = compose_cfg(["dataset=imagenet", *overrides])
    est = memory.estimate(backend=backend, dim=dim, **IMAGENET_SPLITS)
    want = math.ceil(est.host * resources.MARGIN / 2**30)
    assert resources.memory_gb(run, gpu=False) == want
    assert task_resources([run], AUTO).mem == f"{want}G"


def test_memory_gb_on_gpu_tasks_and_unsized_runs() -> None:
    cifar = compose_cfg(["encoder=mlcd_l14", "dataset=cifar100"])
    assert resources.memory_gb(cifar, gpu=True) == resources.EXTRACT_GB  # the model's floor
    probe_only = compose_cfg(["encoder=mlcd_l14", "dataset=cifar100", "stage=probe"])
    assert resources.memory_gb(probe_only, gpu=True) == resources.MIN_GB  # ~1.4 GiB on host
    imagenet = compose_cfg(["encoder=mlcd_l14", "dataset=imagenet", "stage=probe"])
    on_gpu = memory.estimate(backend="torch", dim=1024, device="cuda", **IMAGENET_SPLITS)
    assert resources.memory_gb(imagenet, gpu=True) == math.ceil(on_gpu.host * 1.25 / 2**30)
    digits = compose_cfg(["encoder=mlcd_l14"])  # digits has no expected_sizes: the defaults
    assert [resources.memory_gb(digits, gpu=g) for g in (False, True)] == [16, 64]


def test_every_feature_kind_has_a_width() -> None:
    assert set(KIND_WIDTH) == set(KINDS)
