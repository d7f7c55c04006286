"""Encoder families: every encoder config builds from a tiny random checkpoint saved in a temp
dir, and its features equal a direct forward of the reference preprocessing plus the model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, REPO, compose_cfg, config_names, run_cli
from omegaconf import OmegaConf
from reference import openai_reference, reference, sample_photos

from probe.core.errors import ProbeError
from probe.core.factory import make

TOL = 1e-5
RES = 32
VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    image_size=RES, patch_size=8,
)  # fmt: skip


def _clip_processor(path: Path) -> None:
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(
        size={"shortest_edge": RES}, crop_size={"height": RES, "width": RES}
    ).save_pretrained(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """One tiny random checkpoint per family, written the way real ones are."""
    import transformers as tf

    root = tmp_path_factory.mktemp("tiny_encoders")
    torch.manual_seed(0)
    paths = {}
    paths["clip_vision_model"] = root / "clip_vision"
    tf.CLIPVisionModel(tf.CLIPVisionConfig(**VISION)).save_pretrained(paths["clip_vision_model"])
    _clip_processor(paths["clip_vision_model"])
    paths["clip"] = root / "clip_full"
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    full = tf.CLIPConfig(vision_config=VISION, text_config=text, projection_dim=16)
    tf.CLIPModel(full).save_pretrained(paths["clip"])
    paths["mlcd_vision_model"] = root / "mlcd"
    tf.MLCDVisionModel(tf.MLCDVisionConfig(**VISION)).save_pretrained(paths["mlcd_vision_model"])
    _clip_processor(paths["mlcd_vision_model"])
    paths["siglip_vision_model"] = root / "siglip"
    tf.SiglipVisionModel(tf.SiglipVisionConfig(**VISION)).save_pretrained(
        paths["siglip_vision_model"]
    )
    paths["siglip"] = root / "siglip_full"
    full = tf.SiglipConfig(vision_config=VISION, text_config=text)
    tf.SiglipModel(full).save_pretrained(paths["siglip"])
    paths["VisionTransformer"] = _tiny_open_clip(root / "open_clip")
    return paths


def _tiny_open_clip(path: Path) -> Path | None:
    try:
        import open_clip
    except ImportError:
        return None
    from safetensors.torch import save_file

    path.mkdir()
    vision = {"image_size": RES, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8}
    text = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 4, "layers": 1}
    cfg = {
        "model_cfg": {"embed_dim": 16, "quick_gelu": True, "vision_cfg": vision, "text_cfg": text}
    }
    (path / "open_clip_config.json").write_text(json.dumps(cfg))
    model = open_clip.create_model(f"local-dir:{path}", load_weights=False)
    save_file(model.state_dict(), str(path / "open_clip_model.safetensors"))
    return path


def checkpoint_for(name: str, tiny: dict[str, Path]) -> Path:
    """The tiny checkpoint of the family a config expects (a full CLIP one for clip_l14)."""
    if name == "clip_l14":
        return tiny["clip"]
    model_type = compose_cfg([f"encoder={name}"]).encoder.get("model_type")
    path = tiny[model_type or "clip_vision_model"]
    if path is None:
        pytest.skip("open_clip is not installed (pip install -e '.[openclip]')")
    return path


def build(name: str, model: Path, *extra: str):
    cfg = compose_cfg([f"encoder={name}", f"encoder.model={model}", *extra])
    return make(cfg.encoder, device="cpu", dtype="float32"), cfg.encoder


def reference_pixels(enc_cfg) -> torch.Tensor:
    block = OmegaConf.to_container(enc_cfg, resolve=True).get("preprocess")
    photos = sample_photos()
    if block is None:  # `hf`: the tiny checkpoint's own CLIP processor
        arrays = [openai_reference(p, RES) for p in photos]
    else:
        arrays = [reference(p, block) for p in photos]
    return torch.tensor(np.stack(arrays), dtype=torch.float32)


def direct_forward(model_type: str, path: Path, pixels: torch.Tensor) -> torch.Tensor:
    """The model's own forward, loaded without probe; the protocol's feature."""
    import transformers as tf

    if model_type == "VisionTransformer":
        import open_clip

        visual = open_clip.create_model(f"local-dir:{path}").visual.eval()
        visual.proj = None
        with torch.no_grad():
            return visual(pixels)
    cls = {"mlcd_vision_model": tf.MLCDVisionModel, "siglip_vision_model": tf.SiglipVisionModel}
    net = cls.get(model_type, tf.CLIPVisionModel).from_pretrained(path).eval()
    with torch.no_grad():
        return net(pixel_values=pixels).pooler_output


# Every config that loads a model (pixels and precomputed have none; they are tested in
# tests/test_pipeline.py and tests/test_npz.py).
MODEL_CONFIGS = [
    n
    for n in config_names("encoder")
    if "model" in OmegaConf.load(CONFIGS / "encoder" / f"{n}.yaml")
]


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_features_equal_direct_forward(name: str, tiny) -> None:
    path = checkpoint_for(name, tiny)
    encoder, enc_cfg = build(name, path, f"encoder.resolution={RES}")
    photos = sample_photos()
    batch = torch.stack([encoder.transform(p) for p in photos])
    feats = encoder.embed(batch)
    want = direct_forward(enc_cfg.get("model_type") or "", path, reference_pixels(enc_cfg))
    assert feats.shape == (len(photos), 32) and encoder.feature_dim == 32
    assert feats.dtype == torch.float32
    assert (feats - want).abs().max().item() <= TOL


def test_config_fields_and_families() -> None:
    for name in MODEL_CONFIGS:
        enc = compose_cfg([f"encoder={name}"]).encoder
        assert enc.revision == "main" and enc.feature == "pooler_output" and enc.dtype == "auto"
        assert {"model", "model_type", "resolution", "preprocess"} <= set(enc)
    expected = {"mlcd_b32": "clip_vision_model", "mlcd_l14": "clip_vision_model"}
    expected |= {f"mlcd_bigg14_{r}": "mlcd_vision_model" for r in (224, 336, 448)}
    expected |= {"clip_l14": "clip_vision_model", "siglip_so400m": "siglip_vision_model"}
    for name, model_type in expected.items():
        enc = compose_cfg([f"encoder={name}"]).encoder
        assert enc.model_type == model_type and enc._target_ == "probe.encoders.hf.build"
    assert compose_cfg(["encoder=dfn5b_h14"]).encoder._target_ == "probe.encoders.openclip.build"


@pytest.mark.parametrize("model_type", ["clip_vision_model", "mlcd_vision_model"])
def test_cls_and_mean_features(model_type: str, tiny) -> None:
    import transformers as tf

    path = tiny[model_type]
    pixels = torch.tensor(np.stack([openai_reference(p, RES) for p in sample_photos()])).float()
    cls = tf.MLCDVisionModel if model_type == "mlcd_vision_model" else tf.CLIPVisionModel
    with torch.no_grad():
        out = cls.from_pretrained(path).eval()(pixel_values=pixels)
    hidden = out.last_hidden_state
    for feature, want in [("cls", hidden[:, 0]), ("mean", hidden[:, 1:].mean(1))]:
        encoder, _ = build("hf", path, f"encoder.feature={feature}")
        got = encoder.embed(pixels)
        assert (got - want).abs().max().item() <= TOL
        assert (got - out.pooler_output).abs().max().item() > 1e-3  # not the normed CLS


def test_siglip_has_no_cls_token(tiny) -> None:
    import transformers as tf

    path = tiny["siglip_vision_model"]
    with pytest.raises(ProbeError, match="no CLS token"):
        build("siglip_so400m", path, "encoder.feature=cls", f"encoder.resolution={RES}")
    encoder, _ = build("siglip_so400m", path, "encoder.feature=mean", f"encoder.resolution={RES}")
    pixels = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = tf.SiglipVisionModel.from_pretrained(path).eval()(pixel_values=pixels)
    assert (encoder.embed(pixels) - hidden.last_hidden_state.mean(1)).abs().max() <= TOL


def test_open_clip_feature_is_before_the_projection(tiny) -> None:
    path = tiny["VisionTransformer"]
    if path is None:
        pytest.skip("open_clip is not installed")
    import open_clip

    model = open_clip.create_model(f"local-dir:{path}").eval()
    pixels = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    encoder, _ = build("dfn5b_h14", path, f"encoder.resolution={RES}")
    pooled = encoder.embed(pixels)
    with torch.no_grad():
        assert (pooled @ model.visual.proj - model.encode_image(pixels)).abs().max() <= TOL
        cls, _ = build("dfn5b_h14", path, f"encoder.resolution={RES}", "encoder.feature=cls")
        assert (model.visual.ln_post(cls.embed(pixels)) - pooled).abs().max() <= TOL
    assert build("dfn5b_h14", path, f"encoder.resolution={RES}", "encoder.feature=mean")[0]


@pytest.mark.parametrize(
    "model_type", ["clip", "mlcd_vision_model", "siglip_vision_model", "siglip"]
)
def test_sdpa_attention_and_fp32_weights(model_type: str, tiny) -> None:
    encoder, _ = build("hf", tiny[model_type], "encoder.preprocess={size: 32}")
    net = encoder.forward.net
    assert net.config._attn_implementation == "sdpa"
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert not any(k.startswith("text") for k in net.state_dict())  # vision tower only


def test_bf16_checkpoint_loads_in_fp32(tiny, tmp_path: Path) -> None:
    import transformers as tf

    model = tf.CLIPVisionModel.from_pretrained(tiny["clip_vision_model"]).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    _clip_processor(tmp_path)
    encoder, _ = build("hf", tmp_path)
    assert next(encoder.forward.net.parameters()).dtype == torch.float32
    pixels = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model.float().eval()(pixel_values=pixels).pooler_output
    assert (encoder.embed(pixels) - want).abs().max() <= TOL


@pytest.mark.parametrize(
    ("name", "checkpoint", "found"),
    [
        ("mlcd_l14", "mlcd_vision_model", "mlcd_vision_model"),
        ("mlcd_bigg14_336", "clip_vision_model", "clip_vision_model"),
        ("siglip_so400m", "clip", "clip"),
    ],
)
def test_model_type_mismatch_fails_clearly(name: str, checkpoint: str, found: str, tiny) -> None:
    expected = compose_cfg([f"encoder={name}"]).encoder.model_type
    with pytest.raises(ProbeError, match=f"is a '{found}' checkpoint.*model_type='{expected}'"):
        build(name, tiny[checkpoint], f"encoder.resolution={RES}")


def test_model_type_mismatch_cli_message(tiny, dirs, tmp_path: Path) -> None:
    args = ["encoder=mlcd_bigg14_336", f"encoder.model={tiny['clip']}", "stage=extract", *dirs]
    proc = run_cli(args, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert "'clip' checkpoint" in out and "mlcd_vision_model" in out


def test_missing_weights_fail(tiny, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = tiny["clip_vision_model"]
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    state = load_file(src / "model.safetensors")
    (key,) = [k for k in state if k.endswith("post_layernorm.weight")]
    del state[key]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ProbeError, match="post_layernorm.weight"):
        build("hf", tmp_path)


def test_resolution_is_checked(tiny, caplog) -> None:
    with pytest.raises(ProbeError, match="encoder.resolution=48.*takes 32 px"):
        build("mlcd_l14", tiny["clip_vision_model"], "encoder.resolution=48")
    caplog.set_level("WARNING")
    encoder, _ = build("mlcd_bigg14_224", tiny["mlcd_vision_model"], "encoder.resolution=48")
    assert "trained at 32 px" in caplog.text
    assert encoder.transform(sample_photos()[0]).shape == (3, 48, 48)


def test_bad_feature_and_model_fail_clearly(tiny, tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="encoder.feature='gap'"):
        build("hf", tiny["clip_vision_model"], "encoder.feature=gap")
    with pytest.raises(ProbeError, match="could not be loaded"):
        build("hf", tmp_path / "nowhere")


def test_open_clip_bad_directory(tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    with pytest.raises(ProbeError, match="no such directory"):
        build("dfn5b_h14", tmp_path / "missing")
    with pytest.raises(ProbeError, match="no open_clip_config.json"):
        build("dfn5b_h14", tmp_path)


def test_dfn5b_without_open_clip_names_the_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)  # `import open_clip` now fails
    with pytest.raises(ProbeError, match=r'pip install -e "\.\[openclip\]"'):
        make(compose_cfg(["encoder=dfn5b_h14"]).encoder, device="cpu", dtype="float32")


def test_dfn5b_without_open_clip_cli(dirs, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "open_clip"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'open_clip'\")\n")
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(shadow.parent)])}
    proc = run_cli(["encoder=dfn5b_h14", "stage=extract", *dirs], cwd=tmp_path, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert 'pip install -e ".[openclip]"' in out


def test_pixels_family() -> None:
    encoder = make(compose_cfg(["encoder=pixels", "encoder.size=4"]).encoder, device="cpu")
    photo = sample_photos()[0]
    want = np.asarray(photo.resize((4, 4), 3), dtype=np.float32).transpose(2, 0, 1) / 255
    assert np.abs(encoder.transform(photo).numpy() - want.ravel()).max() <= TOL
