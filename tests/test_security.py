"""Untrusted files are never unpickled; bad configuration names the key and the allowed values."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, compose_cfg, config_names, run_cli

from probe.core.errors import ProbeError
from probe.core.safeio import load_checkpoint, load_npy
from probe.run import run


class _Boom:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _sources() -> list[Path]:
    return sorted((REPO / "probe").rglob("*.py"))


def test_no_unsafe_deserialisation_in_the_package() -> None:
    """Every torch.load is weights-only; no pickle, no allow_pickle=True, no unsafe yaml."""
    bad = []
    for path in _sources():
        text = path.read_text()
        for m in re.finditer(r"torch\.load\((?:[^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in m.group(0):
                bad.append(f"{path.name}: {m.group(0)}")
        for pattern in (r"allow_pickle\s*=\s*True", r"pickle\.loads?\(", r"yaml\.load\(",
                        r"trust_remote_code\s*=\s*True"):  # fmt: skip
            bad += [f"{path.name}: {pattern}" for _ in re.finditer(pattern, text)]
    assert not bad, bad


@pytest.mark.parametrize("name", config_names("encoder"))
def test_encoder_configs_do_not_trust_remote_code(name: str) -> None:
    cfg = compose_cfg([f"encoder={name}"])
    assert not cfg.encoder.get("trust_remote_code", False)


def test_pickle_checkpoint_refused_weights_only_accepted(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    torch.save({"w": torch.ones(2), "evil": _Boom(marker)}, tmp_path / "bad.pt")
    with pytest.raises(ProbeError, match=r"refusing to load .*bad\.pt.*safetensors"):
        load_checkpoint(tmp_path / "bad.pt")
    assert not marker.exists()
    torch.save({"w": torch.arange(3.0)}, tmp_path / "good.pt")
    assert torch.equal(load_checkpoint(tmp_path / "good.pt")["w"], torch.arange(3.0))
    from safetensors.torch import save_file

    save_file({"w": torch.arange(4.0)}, tmp_path / "good.safetensors")
    assert torch.equal(load_checkpoint(tmp_path / "good.safetensors")["w"], torch.arange(4.0))


def test_pickle_npy_refused(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    np.save(tmp_path / "bad.npy", np.array([_Boom(marker)], dtype=object), allow_pickle=True)
    for mmap in (False, True):
        with pytest.raises(ProbeError, match=r"refusing to load .*bad\.npy"):
            load_npy(tmp_path / "bad.npy", mmap=mmap)
    assert not marker.exists()
    np.save(tmp_path / "good.npy", np.eye(3, dtype=np.float32))
    assert load_npy(tmp_path / "good.npy", mmap=True).shape == (3, 3)


def test_trust_remote_code_on_warns(tmp_path: Path, caplog) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from probe.encoders.hf import load_config, load_model

    cfg = CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                           num_attention_heads=2, image_size=16, patch_size=8)  # fmt: skip
    CLIPVisionModel(cfg).save_pretrained(tmp_path)
    caplog.set_level("WARNING")
    config = load_config(str(tmp_path), revision="main", trust_remote_code=False)
    load_model(str(tmp_path), config, revision="main", trust_remote_code=False)
    assert "trust_remote_code" not in caplog.text
    load_model(str(tmp_path), config, revision="main", trust_remote_code=True)
    assert "trust_remote_code is on" in caplog.text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dataset.metric=top5", r"dataset.metric='top5' .*allowed: top1, mean_per_class"),
        ("dataset.val.fraction=0", r"dataset.val.fraction=0 must be in \(0, 1\)"),
        ("dataset.val.fraction=1.0", r"dataset.val.fraction=1.0 must be in \(0, 1\)"),
        ("batch_size=0", r"batch_size=0 must be a positive integer"),
        ("batch_size=-3", r"batch_size=-3 must be a positive integer"),
        ("extract.shard_size=0", r"extract.shard_size=0 must be a positive integer"),
        ("num_workers=-2", r"num_workers=-2 must be >= 0 or 'auto'"),
        ("stage=fit", r"stage='fit' is not valid; allowed: all, extract, probe"),
    ],
)
def test_bad_config_names_key_and_allowed_values(tmp_path: Path, override: str, message: str):
    dirs = [f"cache_dir={tmp_path / 'c'}", f"results_dir={tmp_path / 'r'}"]
    with pytest.raises(ProbeError, match=message):
        run(compose_cfg([*dirs, override]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="device=cuda was asked for but no CUDA GPU"):
        run(compose_cfg([f"cache_dir={tmp_path}", "device=cuda"]))


def test_offline_revision_not_cached_names_revision(tmp_path: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    args = ["encoder=hf", "encoder.model=probe-test/not-cached", "encoder.revision=v9",
            f"cache_dir={tmp_path / 'c'}", f"results_dir={tmp_path / 'r'}",
            "stage=extract"]  # fmt: skip
    proc = run_cli(args, cwd=tmp_path, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "encoder.model='probe-test/not-cached' (encoder.revision='v9')" in out
    assert "Traceback" not in out
