"""Encoder families: every encoder config builds from a tiny random checkpoint saved in a temp
dir, and its features equal a direct forward of the reference preprocessing plus the model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch
from conftest import compose_cfg, main_refuses
from omegaconf import OmegaConf
from reference import openai_reference, reference, sample_photos, squash_reference
from tiny import RES, clip_processor, direct_forward, model_configs, standin, timm_model

from probe.core.errors import ProbeError
from probe.core.factory import make

TOL = 1e-5


def build(name: str, model: Path, *extra: str):
    """Config `name` on the checkpoint at `model` (width 32, as every stand-in)."""
    cfg = compose_cfg([f"encoder={name}", f"encoder.model={model}", "++encoder.width=32", *extra])
    return make(cfg.encoder, device="cpu", dtype="float32"), cfg.encoder


def build_standin(name: str, tiny, timm_dir: Path, *extra: str):
    cfg = compose_cfg([f"encoder={name}", *standin(name, tiny, timm_dir), *extra])
    return make(cfg.encoder, device="cpu", dtype="float32"), cfg.encoder


def reference_pixels(enc_cfg) -> torch.Tensor:
    """The photos through the reference transform of the block, or of the checkpoint's own
    preprocessing where the config reads it (`preprocess: null`)."""
    enc = OmegaConf.to_container(enc_cfg, resolve=True)
    block, photos = enc.get("preprocess"), sample_photos()
    if block is None and enc["_target_"].endswith("timm.build"):
        block = timm_block(enc)
    if block is not None:
        arrays = [reference(p, block) for p in photos]
    else:
        arrays = [processor_reference(p, Path(enc["model"])) for p in photos]
    return torch.tensor(np.stack(arrays), dtype=torch.float32)


def processor_reference(photo, model_dir: Path) -> np.ndarray:
    """A stand-in's preprocessor_config.json read here, with PIL: CLIP's or SigLIP's."""
    cfg = json.loads((model_dir / "preprocessor_config.json").read_text())
    mean, std, resample = cfg["image_mean"], cfg["image_std"], cfg["resample"]
    if "shortest_edge" in cfg["size"]:
        return openai_reference(photo, cfg["size"]["shortest_edge"], mean, std, resample=resample)
    return squash_reference(photo, cfg["size"]["height"], mean, std, resample=resample)


def timm_block(enc: dict) -> dict:
    """timm's own data config of the stand-in (its pretrained_cfg at encoder.resolution)."""
    from timm.data import resolve_data_config

    net = timm_model(enc["model"], Path(enc["checkpoint"]), tiny.timm_kwargs(enc["model"]))
    res = enc["resolution"]
    data = resolve_data_config(args={"input_size": (3, res, res)}, model=net)
    assert data["crop_mode"] == "center"
    return {
        "size": res,
        "crop_pct": data["crop_pct"],
        "mode": "shortest",
        "crop": None,
        "interpolation": data["interpolation"],
        "mean": data["mean"],
        "std": data["std"],
    }


MODEL_CONFIGS = model_configs()


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_features_equal_direct_forward(name: str, tiny, timm_dir: Path) -> None:
    encoder, enc_cfg = build_standin(name, tiny, timm_dir)
    photos = sample_photos()
    batch = torch.stack([encoder.transform(p) for p in photos])
    feats = encoder.embed(batch)
    pixels = reference_pixels(enc_cfg)
    assert (batch - pixels).abs().max().item() <= TOL
    want = direct_forward(enc_cfg, pixels)
    assert feats.shape == (len(photos), 32) and encoder.feature_dim == 32
    assert feats.dtype == torch.float32
    assert (feats - want).abs().max().item() <= TOL


def test_config_fields_and_families() -> None:
    for name in MODEL_CONFIGS:
        enc = compose_cfg([f"encoder={name}"]).encoder
        assert enc.feature == "pooler_output" and enc.features is None and enc.dtype == "auto"
        assert {"model", "resolution", "width", "preprocess"} <= set(enc)
        if not enc._target_.endswith("timm.build"):
            assert enc.revision == "main" and "model_type" in enc
    hf = {"mlcd_b32": "clip_vision_model", "mlcd_l14": "clip_vision_model"}
    hf |= {f"mlcd_bigg14_{r}": "mlcd_vision_model" for r in (224, 336, 448)}
    hf |= {"clip_l14": "clip_vision_model", "siglip_so400m": "siglip_vision_model"}
    hf |= {"clip_b16": "clip_vision_model", "siglip2_so400m": "siglip_vision_model"}
    hf |= {f"dinov2_{size}": "dinov2" for size in ("s14", "b14", "l14", "g14")}
    hf |= {f"dinov2_{size}_reg": "dinov2_with_registers" for size in ("s14", "b14", "l14", "g14")}
    for name, model_type in hf.items():
        enc = compose_cfg([f"encoder={name}"]).encoder
        assert enc.model_type == model_type and enc._target_ == "probe.encoders.hf.build"
    for name in ("dfn5b_h14", "openclip_bigg14"):
        assert compose_cfg([f"encoder={name}"]).encoder._target_ == "probe.encoders.openclip.build"
    for name in ("eva02_l14", "timm"):
        assert compose_cfg([f"encoder={name}"]).encoder._target_ == "probe.encoders.timm.build"
    # the towers' published widths (ViT-S 384, B 768, L 1024, H 1280, bigG 1664, g 1536,
    # SO400M 1152); DINOv2 with registers has its plain sibling's width
    widths = {"mlcd_b32": 768, "clip_b16": 768, "mlcd_l14": 1024, "clip_l14": 1024,
              "dinov2_s14": 384, "dinov2_b14": 768, "dinov2_l14": 1024, "eva02_l14": 1024,
              "dfn5b_h14": 1280, "dinov2_g14": 1536, "mlcd_bigg14_336": 1664,
              "openclip_bigg14": 1664, "siglip_so400m": 1152, "siglip2_so400m": 1152}  # fmt: skip
    widths |= {f"{name}_reg": widths[name] for name in ("dinov2_s14", "dinov2_b14", "dinov2_l14",
                                                        "dinov2_g14")}  # fmt: skip
    for name, width in widths.items():
        assert compose_cfg([f"encoder={name}"]).encoder.width == width, name


@pytest.mark.parametrize("model_type", ["clip_vision_model", "mlcd_vision_model"])
def test_cls_and_mean_features(model_type: str, tiny) -> None:
    import transformers as tf

    path = tiny[model_type]
    pixels = torch.tensor(np.stack([openai_reference(p, RES) for p in sample_photos()])).float()
    cls = tf.MLCDVisionModel if model_type == "mlcd_vision_model" else tf.CLIPVisionModel
    net = cls.from_pretrained(path).eval()
    with torch.no_grad():
        out = net(pixel_values=pixels)
        raw, hidden = out.last_hidden_state, net.post_layernorm(out.last_hidden_state)
    assert (hidden[:, 0] - out.pooler_output).abs().max().item() <= TOL  # the normed CLS
    for feature, want, before in [("cls", hidden[:, 0], raw[:, 0]),
                                  ("mean", hidden[:, 1:].mean(1), raw[:, 1:].mean(1))]:  # fmt: skip
        encoder, _ = build("hf", path, f"encoder.feature={feature}")
        got = encoder.embed(pixels)
        assert (got - want).abs().max().item() <= TOL
        assert (got - before).abs().max().item() > 1e-3  # not the tokens before post_layernorm


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
    import open_clip

    model = open_clip.create_model(f"local-dir:{path}").eval()
    pixels = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    encoder, _ = build("dfn5b_h14", path, f"encoder.resolution={RES}")
    pooled = encoder.embed(pixels)
    with torch.no_grad():
        assert (pooled @ model.visual.proj - model.encode_image(pixels)).abs().max() <= TOL
        cls, _ = build("dfn5b_h14", path, f"encoder.resolution={RES}", "encoder.feature=cls")
        assert (cls.embed(pixels) - pooled).abs().max() <= TOL  # ln_post of the CLS token
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
    clip_processor(tmp_path)
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


def test_model_type_mismatch_cli_message(tiny, dirs, caplog) -> None:
    """Through `python -m probe`'s main (in-process): one line, exit 2."""
    args = ["encoder=mlcd_bigg14_336", f"encoder.model={tiny['clip']}", "stage=extract", *dirs]
    line = main_refuses(args, caplog)
    assert "'clip' checkpoint" in line and "mlcd_vision_model" in line


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


def test_dinov2_runs_at_any_resolution(tiny) -> None:
    """Configured at 518 px, evaluated at 224: DINOv2 interpolates its position embeddings."""
    import transformers as tf

    encoder, _ = build("dinov2_l14", tiny["dinov2"], "encoder.resolution=48")
    x = torch.stack([encoder.transform(p) for p in sample_photos()])
    assert x.shape == (2, 3, 48, 48)
    with torch.no_grad():
        want = tf.Dinov2Model.from_pretrained(tiny["dinov2"]).eval()(pixel_values=x).pooler_output
    assert (encoder.embed(x) - want).abs().max().item() <= TOL


def test_siglip2_naflex_is_refused(tmp_path: Path) -> None:
    import transformers as tf

    tf.Siglip2VisionConfig(hidden_size=32, num_attention_heads=4).save_pretrained(tmp_path)
    with pytest.raises(ProbeError, match="NaFlex checkpoint.*siglip2-so400m-patch14-384"):
        build("hf", tmp_path)


def test_bad_feature_and_model_fail_clearly(tiny, tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="encoder.feature='gap'"):
        build("hf", tiny["clip_vision_model"], "encoder.feature=gap")
    with pytest.raises(ProbeError, match="could not be loaded"):
        build("hf", tmp_path / "nowhere")


def test_open_clip_bad_directory(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="no such directory"):
        build("dfn5b_h14", tmp_path / "missing")
    with pytest.raises(ProbeError, match="no open_clip_config.json"):
        build("dfn5b_h14", tmp_path)


def test_dfn5b_without_open_clip_names_the_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)  # `import open_clip` now fails
    with pytest.raises(ProbeError, match=r'pip install -e "\.\[openclip\]"'):
        make(compose_cfg(["encoder=dfn5b_h14"]).encoder, device="cpu", dtype="float32")


def test_dfn5b_without_open_clip_cli(dirs, monkeypatch, caplog) -> None:
    """Through `python -m probe`'s main (in-process), `import open_clip` failing: one line,
    exit 2 (tests/test_timm.py runs the command on an interpreter without timm)."""
    monkeypatch.setitem(sys.modules, "open_clip", None)  # `import open_clip` now fails
    line = main_refuses(["encoder=dfn5b_h14", "stage=extract", *dirs], caplog)
    assert 'pip install -e ".[openclip]"' in line


def test_pixels_family() -> None:
    encoder = make(compose_cfg(["encoder=pixels", "encoder.size=4"]).encoder, device="cpu")
    photo = sample_photos()[0]
    want = np.asarray(photo.resize((4, 4), 3), dtype=np.float32).transpose(2, 0, 1) / 255
    assert np.abs(encoder.transform(photo).numpy() - want.ravel()).max() <= TOL
