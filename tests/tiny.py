"""Tiny random stand-ins of every encoder family, written to disk the way real checkpoints are.

transformers models with `save_pretrained`, open_clip as a `local-dir:` folder, timm models as
a safetensors state dict of the config's own architecture shrunk through `model_kwargs`. Each
encoder config is built from the stand-in of its family (`standin`), and `direct_forward`
computes the protocol feature with the family's own library, without probe.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import CONFIGS, compose_cfg
from omegaconf import OmegaConf

RES = 32
WIDTH = 32
VISION = dict(
    hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
    image_size=RES, patch_size=8,
)  # fmt: skip
TEXT = dict(hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
# timm architectures shrunk to the same size; the generic `timm` config gets a plain ViT
TIMM_KWARGS = dict(img_size=RES, patch_size=8, embed_dim=WIDTH, depth=4, num_heads=4)
TIMM_GENERIC = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
# CNN architectures shrunk to a 32-wide last stage instead (ResNeXt: bottleneck expansion 4 x 8)
TIMM_CNN_KWARGS = {"resnext": dict(layers=[1, 1, 1, 1], channels=[8, 8, 8, 8], stem_width=8)}


def timm_kwargs(arch: str) -> dict:
    """The kwargs that shrink `arch` to a stand-in WIDTH wide: a CNN's own, else the ViT's."""
    return next((kw for prefix, kw in TIMM_CNN_KWARGS.items() if arch.startswith(prefix)),
                TIMM_KWARGS)  # fmt: skip


# hub ids whose checkpoints hold both towers: their stand-in is a full two-tower model
TWO_TOWER = {"openai/clip": "clip", "google/siglip": "siglip"}


def clip_processor(path: Path) -> None:
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(
        size={"shortest_edge": RES}, crop_size={"height": RES, "width": RES}
    ).save_pretrained(path)


def make_all(root: Path) -> dict[str, Path]:
    """One stand-in per transformers model type and per open_clip tower class."""
    import transformers as tf

    torch.manual_seed(0)
    paths = {name: root / name for name in ("clip_vision_model", "clip", "mlcd_vision_model",
             "siglip_vision_model", "siglip", "dinov2", "dinov2_with_registers")}  # fmt: skip
    tf.CLIPVisionModel(tf.CLIPVisionConfig(**VISION)).save_pretrained(paths["clip_vision_model"])
    clip_processor(paths["clip_vision_model"])
    full = tf.CLIPConfig(vision_config=VISION, text_config=TEXT, projection_dim=16)
    tf.CLIPModel(full).save_pretrained(paths["clip"])
    tf.MLCDVisionModel(tf.MLCDVisionConfig(**VISION)).save_pretrained(paths["mlcd_vision_model"])
    clip_processor(paths["mlcd_vision_model"])
    tf.SiglipVisionModel(tf.SiglipVisionConfig(**VISION)).save_pretrained(
        paths["siglip_vision_model"]
    )
    tf.SiglipModel(tf.SiglipConfig(vision_config=VISION, text_config=TEXT)).save_pretrained(
        paths["siglip"]
    )
    # as SigLIP 2's fixed-resolution checkpoints ship it: squash, bilinear, mean/std 0.5
    tf.SiglipImageProcessor(size={"height": RES, "width": RES}, resample=2).save_pretrained(
        paths["siglip"]
    )
    tf.Dinov2Model(tf.Dinov2Config(**VISION)).save_pretrained(paths["dinov2"])
    tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(**VISION)).save_pretrained(
        paths["dinov2_with_registers"]
    )  # 4 register tokens, as the released checkpoints have
    paths["VisionTransformer"] = _open_clip(root / "open_clip")
    return paths


def _open_clip(path: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    path.mkdir()
    vision = {"image_size": RES, "layers": 4, "width": WIDTH, "head_width": 8, "patch_size": 8}
    text = {"context_length": 8, "vocab_size": 64, "width": WIDTH, "heads": 4, "layers": 1}
    cfg = {
        "model_cfg": {"embed_dim": 16, "quick_gelu": True, "vision_cfg": vision, "text_cfg": text}
    }
    (path / "open_clip_config.json").write_text(json.dumps(cfg))
    model = open_clip.create_model(f"local-dir:{path}", load_weights=False)
    save_file(model.state_dict(), str(path / "open_clip_model.safetensors"))
    return path


def timm_checkpoint(root: Path, arch: str, kwargs: dict | None = None) -> Path:
    """A random timm model of `arch` (shrunk by `kwargs`, default TIMM_KWARGS) as safetensors."""
    import timm
    from safetensors.torch import save_file

    path = root / f"{arch}.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        net = timm.create_model(
            arch, pretrained=False, **(TIMM_KWARGS if kwargs is None else kwargs)
        )
        save_file(net.state_dict(), str(path))
    return path


def timm_model(arch: str, checkpoint: Path, kwargs: dict | None = None, **create):
    """timm's own model with the stand-in's weights, loaded with plain `load_state_dict`."""
    import timm
    from safetensors.torch import load_file

    kwargs = TIMM_KWARGS if kwargs is None else kwargs
    net = timm.create_model(arch, pretrained=False, **kwargs, **create)
    net.load_state_dict(load_file(str(checkpoint)))
    return net.eval()


def hydra_dict(d: dict) -> str:
    """A dict as a Hydra override value: {k:v,...} (lists as [a,b])."""
    fmt = lambda v: "[" + ",".join(map(str, v)) + "]" if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
    return "{" + ",".join(f"{k}:{fmt(v)}" for k, v in d.items()) + "}"


def family(name: str) -> str:
    return compose_cfg([f"encoder={name}"]).encoder._target_.split(".")[-2]


def standin(name: str, tiny: dict[str, Path], root: Path) -> list[str]:
    """Overrides that point encoder config `name` at the stand-in of its family."""
    enc = compose_cfg([f"encoder={name}"]).encoder
    common = [f"encoder.resolution={RES}"] + ([f"encoder.width={WIDTH}"] if "width" in enc else [])
    if family(name) == "timm":
        arch = TIMM_GENERIC if enc.model == "???" else enc.model
        kwargs = timm_kwargs(arch)
        weights = timm_checkpoint(root, arch, kwargs)
        return [f"encoder.model={arch}", f"encoder.checkpoint={weights}",
                f"++encoder.model_kwargs={hydra_dict(kwargs)}", *common]  # fmt: skip
    model_id = "" if enc.model == "???" else str(enc.model)
    two_tower = next((t for prefix, t in TWO_TOWER.items() if model_id.startswith(prefix)), None)
    key = two_tower or enc.get("model_type") or "clip_vision_model"
    return [f"encoder.model={tiny[key]}", *common]


def direct_forward(enc_cfg, pixels: torch.Tensor) -> torch.Tensor:
    """The protocol feature of the stand-in `enc_cfg` points at, by the family's own library."""
    import transformers as tf

    enc = OmegaConf.to_container(enc_cfg, resolve=True)
    with torch.no_grad():
        if enc["_target_"].endswith("timm.build"):
            net = timm_model(enc["model"], Path(enc["checkpoint"]), timm_kwargs(enc["model"]))
            return net.forward_head(net.forward_features(pixels), pre_logits=True)
        if enc.get("model_type") == "VisionTransformer":
            import open_clip

            visual = open_clip.create_model(f"local-dir:{enc['model']}").visual.eval()
            visual.proj = None
            return visual(pixels)
        cls = {"mlcd_vision_model": tf.MLCDVisionModel, "siglip_vision_model": tf.SiglipVisionModel,
               "dinov2": tf.Dinov2Model, "dinov2_with_registers": tf.Dinov2WithRegistersModel,
               }.get(enc.get("model_type"), tf.CLIPVisionModel)  # fmt: skip
        return cls.from_pretrained(enc["model"]).eval()(pixel_values=pixels).pooler_output


def model_configs() -> list[str]:
    """Every encoder config that loads a model (pixels and precomputed have none)."""
    return [
        p.stem for p in sorted((CONFIGS / "encoder").glob("*.yaml")) if "model" in OmegaConf.load(p)
    ]


def open_clip_kinds(path: str | Path, res: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A seeded batch and what open_clip itself gives for every kind on it: the pooled output
    (projection removed), `ln_post` of every token (cls, mean) and `last4` from its own
    `forward_intermediates(normalize_intermediates=True)`."""
    import open_clip

    visual = open_clip.create_model(f"local-dir:{path}").visual.eval()
    visual.proj = None
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = visual.forward_intermediates(x, indices=4, normalize_intermediates=True,
                                           output_fmt="NLC", output_extra_tokens=True)  # fmt: skip
        tokens = visual.ln_post(visual.transformer(visual._embeds(x)))
    classes = [p[:, 0] for p in out["image_intermediates_prefix"]]
    last4 = torch.cat([*classes, out["image_intermediates"][-1].mean(1)], 1)
    return x, {"pooler_output": out["image_features"], "cls": tokens[:, 0],
               "mean": tokens[:, 1:].mean(1), "last4": last4}  # fmt: skip
