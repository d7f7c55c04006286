"""`python -m probe.convert` against DeepGlint's own reference outputs (tests/fixtures/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, compose_cfg

from probe.encoders import mlcd_convert as convert
from probe.encoders.mlcd_convert import ConversionError

FIXTURES = REPO / "tests" / "fixtures"  # see tests/fixtures/README.md
CHECKPOINT = FIXTURES / "mlcd_rope2d_tiny.pt"
EXPECTED = FIXTURES / "mlcd_rope2d_tiny_expected.pt"
# one worker runs the module (pytest -n): `converted`, a real `python -m probe.convert`, once
pytestmark = pytest.mark.xdist_group("convert")


def run_convert(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "probe.convert", *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip


def flags(checkpoint: Path, out: Path, size: int = 56) -> list[str]:
    return [
        "--pytorch_dump_folder_path", str(out), "--checkpoint_path", str(checkpoint),
        "--image_size", str(size),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conv") / "mlcd-tiny"
    proc = run_convert(*flags(CHECKPOINT, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verified" in proc.stdout and f"encoder.model={out}" in proc.stdout
    return out


@pytest.fixture(scope="module")
def expected() -> dict:
    return torch.load(EXPECTED, weights_only=True)


def forward(model_dir: Path, pixels: torch.Tensor):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(pixel_values=pixels)


def test_reproduces_reference_outputs(converted: Path, expected: dict) -> None:
    from transformers import AutoModel, MLCDVisionModel

    model, info = AutoModel.from_pretrained(converted, output_loading_info=True)
    assert isinstance(model, MLCDVisionModel)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    with torch.no_grad():
        out = model.eval()(pixel_values=expected["pixel_values"])
    assert (out.pooler_output - expected["pooler_output"]).abs().max() <= 1e-5
    assert (out.last_hidden_state - expected["last_hidden_state"]).abs().max() <= 1e-5


def test_architecture_inferred_from_tensors(converted: Path, expected: dict) -> None:
    cfg = json.loads((converted / "config.json").read_text())
    ref = expected["config"]
    assert cfg["model_type"] == "mlcd_vision_model"
    assert (cfg["hidden_size"], cfg["num_hidden_layers"]) == (ref["width"], ref["layers"])
    assert cfg["num_attention_heads"] == ref["heads"]
    assert cfg["intermediate_size"] == int(ref["width"] * ref["mlp_ratio"])
    assert (cfg["patch_size"], cfg["image_size"]) == (ref["patch_size"], 56)
    assert cfg["rope_parameters"]["rope_theta"] == 10000.0


def test_preprocessor_config(converted: Path) -> None:
    from probe.encoders.preprocess import preprocess_from_hf

    pre = json.loads((converted / "preprocessor_config.json").read_text())
    assert pre["image_processor_type"] == "CLIPImageProcessor"
    assert pre["size"] == {"shortest_edge": 56}
    assert pre["crop_size"] == {"height": 56, "width": 56}
    assert pre["resample"] == 3 and pre["do_center_crop"]
    assert pre["image_mean"] == convert.OPENAI_MEAN and pre["image_std"] == convert.OPENAI_STD
    block = preprocess_from_hf(converted)
    assert (block["size"], block["crop"], block["mode"]) == (56, [56, 56], "shortest")


def test_orig_mod_prefix_and_dropped_entries(tmp_path: Path, expected: dict) -> None:
    state = torch.load(CHECKPOINT, weights_only=True)
    assert {"positional_embedding", "proj"} <= set(state)
    prefixed = tmp_path / "compiled.pt"
    torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, prefixed)
    report = convert.convert(prefixed, tmp_path / "out", image_size=56)
    assert report["tensors"] == len(state) - 2 + 2 * 2 * 2  # q,k,v split: +2 per weight/bias
    out = forward(tmp_path / "out", expected["pixel_values"])
    assert (out.pooler_output - expected["pooler_output"]).abs().max() <= 1e-5


def _random_original(width: int, depth: int, heads: int, mlp: int, patch: int) -> dict:
    g = torch.Generator().manual_seed(1)

    def t(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    state = {
        "conv1.weight": t(width, 3, patch, patch),
        "class_embedding": t(width),
        "class_pos_emb": t(1, width // heads // 2),
        "ln_pre.weight": 1 + t(width), "ln_pre.bias": t(width),
        "ln_post.weight": 1 + t(width), "ln_post.bias": t(width),
    }  # fmt: skip
    for i in range(depth):
        b = f"transformer.resblocks.{i}."
        state |= {
            b + "ln_1.weight": 1 + t(width), b + "ln_1.bias": t(width),
            b + "ln_2.weight": 1 + t(width), b + "ln_2.bias": t(width),
            b + "attn.in_proj.weight": t(3 * width, width), b + "attn.in_proj.bias": t(3 * width),
            b + "attn.out_proj.weight": t(width, width), b + "attn.out_proj.bias": t(width),
            b + "mlp.c_fc.weight": t(mlp, width), b + "mlp.c_fc.bias": t(mlp),
            b + "mlp.c_proj.weight": t(width, mlp), b + "mlp.c_proj.bias": t(width),
        }  # fmt: skip
    return state


def test_any_size_converts(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    state = _random_original(width=96, depth=3, heads=3, mlp=200, patch=16)
    torch.save(state, tmp_path / "other.pt")
    report = convert.convert(tmp_path / "other.pt", tmp_path / "out", image_size=64)
    assert (report["hidden_size"], report["num_hidden_layers"]) == (96, 3)
    assert (report["num_attention_heads"], report["intermediate_size"]) == (3, 200)
    assert report["patch_size"] == 16
    written = load_file(tmp_path / "out" / "model.safetensors")
    q, k, v = state["transformer.resblocks.2.attn.in_proj.weight"].chunk(3)
    assert torch.equal(written["encoder.layers.2.self_attn.q_proj.weight"], q)
    assert torch.equal(written["encoder.layers.2.self_attn.k_proj.weight"], k)
    assert torch.equal(written["encoder.layers.2.self_attn.v_proj.weight"], v)
    assert torch.equal(written["embeddings.patch_embedding.weight"], state["conv1.weight"])


def test_works_as_hf_encoder_through_the_pipeline(converted: Path, tmp_path: Path) -> None:
    """`encoder=hf encoder.model=DIR`: extracted features equal a direct forward."""
    from reference import openai_reference

    from probe.run import build_dataset, run

    overrides = [
        "encoder=hf", f"encoder.model={converted}", "encoder.model_type=mlcd_vision_model",
        "stage=extract", f"cache_dir={tmp_path / 'c'}", f"results_dir={tmp_path / 'r'}",
    ]  # fmt: skip
    cfg = compose_cfg(overrides)
    run(cfg)
    metas = (tmp_path / "c").rglob("meta.json")
    entry = next(p.parent for p in metas if p.parent.name.startswith("test-"))
    feats = np.load(entry / "features.npy")
    split = build_dataset(cfg).splits["test"]
    pixels = np.stack([openai_reference(split.load(i), 56) for i in split.items])
    want = forward(converted, torch.tensor(pixels, dtype=torch.float32)).pooler_output.numpy()
    assert feats.shape == (len(split), 64)
    np.testing.assert_allclose(feats, want, atol=1e-5, rtol=0)


def test_missing_file(tmp_path: Path, capsys) -> None:
    """`python -m probe.convert`'s main in-process (the `converted` fixture runs the command)."""
    from probe.convert import main

    assert main(flags(tmp_path / "nope.pt", tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert f"--checkpoint_path {tmp_path / 'nope.pt'} does not exist" in err
    assert not (tmp_path / "out").exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("these are not weights\n")
    with pytest.raises(ConversionError, match="is not a PyTorch checkpoint"):
        convert.convert(tmp_path / "notes.pt", tmp_path / "out", image_size=56)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ConversionError, match="holds a list, not a state dict"):
        convert.convert(tmp_path / "list.pt", tmp_path / "out", image_size=56)


def test_missing_keys_are_named(tmp_path: Path, capsys) -> None:
    from probe.convert import main

    state = torch.load(CHECKPOINT, weights_only=True)
    del state["ln_post.bias"], state["transformer.resblocks.1.attn.in_proj.weight"]
    torch.save(state, tmp_path / "partial.pt")
    assert main(flags(tmp_path / "partial.pt", tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "lacks 2 required key(s)" in err
    assert "ln_post.bias" in err
    assert "transformer.resblocks.1.attn.in_proj.weight" in err


def test_bad_image_size_and_existing_output(tmp_path: Path, converted: Path) -> None:
    with pytest.raises(ConversionError, match="--image_size 50 is not a multiple"):
        convert.convert(CHECKPOINT, tmp_path / "out", image_size=50)
    with pytest.raises(ConversionError, match="exists and is not empty.*--overwrite"):
        convert.convert(CHECKPOINT, converted, image_size=56)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("x")
    convert.convert(CHECKPOINT, tmp_path / "out", image_size=56, overwrite=True)
    assert not (tmp_path / "out" / "stale.txt").exists()
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_verification_fails_loudly_on_a_bad_write(tmp_path: Path, monkeypatch) -> None:
    """A corrupted write is caught by the reload check; nothing lands at the destination."""
    real_write = convert.write_model

    def corrupting_write(hf_state, config, out_dir):
        bad = dict(hf_state)
        bad["encoder.layers.0.mlp.fc1.bias"] = bad["encoder.layers.0.mlp.fc1.bias"] + 1e-3
        real_write(bad, config, out_dir)

    monkeypatch.setattr(convert, "write_model", corrupting_write)
    with pytest.raises(ConversionError, match=r"1 tensor\(s\) differ.*fc1.bias"):
        convert.convert(CHECKPOINT, tmp_path / "out", image_size=56)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too


def test_verification_fails_on_non_finite_output(tmp_path: Path) -> None:
    state = torch.load(CHECKPOINT, weights_only=True)
    state["ln_pre.weight"] = torch.full_like(state["ln_pre.weight"], float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(ConversionError, match="non-finite outputs") as err:
        convert.convert(tmp_path / "nan.pt", tmp_path / "out", image_size=56)
    assert "non-finite weights: ['pre_layrnorm.weight']" in str(err.value)
    assert "Nothing was written" in str(err.value)
    assert not (tmp_path / "out").exists()
