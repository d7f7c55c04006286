"""Every config file composes, and names equal file names."""

from __future__ import annotations

import pytest
from conftest import compose_cfg, config_names

from probe.datasets.base import METRICS


@pytest.mark.parametrize("name", config_names("encoder"))
def test_encoder_config_composes(name: str) -> None:
    cfg = compose_cfg([f"encoder={name}"])
    assert cfg.encoder.name == name
    assert cfg.encoder._target_.startswith("probe.encoders.")


@pytest.mark.parametrize("name", config_names("dataset"))
def test_dataset_config_composes(name: str) -> None:
    cfg = compose_cfg([f"dataset={name}"])
    assert cfg.dataset.name == name
    assert cfg.dataset.metric in METRICS
    assert cfg.dataset.num_classes == "auto" or cfg.dataset.num_classes > 0  # npz: inferred
    assert cfg.dataset._target_.startswith("probe.datasets.")


@pytest.mark.parametrize("name", config_names("probe"))
def test_probe_config_composes(name: str) -> None:
    cfg = compose_cfg([f"probe={name}"])
    assert cfg.probe._target_.startswith("probe.solvers.")


def test_top_level_defaults() -> None:
    cfg = compose_cfg([])
    assert (cfg.encoder.name, cfg.dataset.name, cfg.probe.name) == ("pixels", "digits", "torch")
    for key in ("data_root", "cache_dir", "results_dir", "device", "batch_size", "num_workers"):
        assert key in cfg
    assert cfg.results_dir == "results"


def test_settings_come_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("PROBE_CACHE_DIR", "/scratch/feats")
    monkeypatch.setenv("PROBE_DATA_ROOT", "/datasets")
    cfg = compose_cfg([])
    assert cfg.cache_dir == "/scratch/feats"
    assert cfg.dataset.val.seed == cfg.seed
    assert compose_cfg(["dataset=cifar100"]).dataset.root == "/datasets/cifar100"


def test_name_is_overridable() -> None:
    assert compose_cfg(["encoder.name=mine"]).encoder.name == "mine"
