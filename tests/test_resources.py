"""What a grid's array tasks ask SLURM for (probe/launch/resources.py), from the real configs.

tests/test_slurm.py submits the printed command to a real GPU-less cluster; here every
encoder config is checked for the GPU decision, and the options for their flags.
"""

from __future__ import annotations

import pytest
from conftest import compose_cfg, config_names

from probe.core.errors import ProbeError
from probe.launch import resources
from probe.launch.resources import needs_gpu, task_resources

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
