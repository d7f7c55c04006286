"""One tag, one tensor (issue 23): the same OpenAI-CLIP weights give the same feature of every
kind through the hf, open_clip and timm families.

One random state dict in OpenAI's CLIP format (`visual.conv1.weight`, `visual.transformer.
resblocks.N.attn.in_proj_weight`, ...; open_clip's `CLIP` keeps OpenAI's key names) is written
in each family's own format and loaded through the project's builders: an open_clip
`local-dir:` folder, the same file as a timm checkpoint (timm's `checkpoint_filter_fn`
converts OpenAI keys itself), and a transformers `save_pretrained` directory (keys mapped as
transformers' CLIP conversion script maps them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import compose_cfg
from tiny import hydra_dict, open_clip_kinds

from probe.core.factory import make
from probe.encoders.kinds import KINDS

WIDTH, LAYERS, HEADS, PATCH, RES, EMBED = 64, 4, 4, 16, 48, 16
TIMM_ARCH = "vit_base_patch16_clip_quickgelu_224.openai"
TIMM_KWARGS = dict(img_size=RES, patch_size=PATCH, embed_dim=WIDTH, depth=LAYERS, num_heads=HEADS,
                   num_classes=EMBED)  # fmt: skip
TOL = 1e-5
HF_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
HF_TOP = {
    "conv1.weight": "embeddings.patch_embedding.weight",
    "class_embedding": "embeddings.class_embedding",
    "positional_embedding": "embeddings.position_embedding.weight",
    "ln_pre": "pre_layrnorm",
    "ln_post": "post_layernorm",
}


def openai_checkpoint(
    root: Path, name: str = "open_clip", **vision_cfg: object
) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random OpenAI-format CLIP, as an open_clip `local-dir:` folder; its state dict.

    Every LayerNorm gets random affine weights, so a missing, extra or misplaced norm shows.
    `vision_cfg` adds open_clip tower options (`final_ln_after_pool`, `attentional_pool`).
    """
    import open_clip
    from safetensors.torch import save_file

    path = root / name
    path.mkdir()
    vision = {"image_size": RES, "layers": LAYERS, "width": WIDTH, "head_width": WIDTH // HEADS,
              "patch_size": PATCH, **vision_cfg}  # fmt: skip
    text = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 4, "layers": 1}
    cfg = {"model_cfg": {"embed_dim": EMBED, "quick_gelu": True, "vision_cfg": vision,
                         "text_cfg": text}}  # fmt: skip
    (path / "open_clip_config.json").write_text(json.dumps(cfg))
    torch.manual_seed(0)
    state = open_clip.create_model(f"local-dir:{path}", load_weights=False).state_dict()
    state = {k: v.clone().contiguous() for k, v in state.items()}
    for key, value in state.items():
        if ".ln_" in key or key.startswith(("visual.ln_", "ln_")):
            value.copy_(torch.randn_like(value) * 0.2 + (1.0 if key.endswith("weight") else 0.0))
    save_file(state, str(path / "open_clip_model.safetensors"))
    return path, state


def hf_checkpoint(root: Path, state: dict[str, torch.Tensor]) -> Path:
    """The visual tower of `state` as a transformers `CLIPVisionModel` directory."""
    import transformers as tf

    config = tf.CLIPVisionConfig(hidden_size=WIDTH, intermediate_size=4 * WIDTH,
                                 num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                 image_size=RES, patch_size=PATCH, hidden_act="quick_gelu",
                                 layer_norm_eps=1e-5)  # fmt: skip
    net = tf.CLIPVisionModel(config)
    net.load_state_dict(hf_state(state), strict=True)
    path = root / "hf"
    net.save_pretrained(path)
    return path


def hf_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI visual keys -> transformers CLIPVisionModel keys (in_proj split into q, k, v)."""
    out = {}
    for key, value in state.items():
        if not key.startswith("visual.") or key == "visual.proj":
            continue
        key = key.removeprefix("visual.")
        if key.startswith("transformer.resblocks."):
            index, rest = key.removeprefix("transformer.resblocks.").split(".", 1)
            prefix = f"encoder.layers.{index}."
            if rest.startswith("attn.in_proj_"):
                kind = rest.removeprefix("attn.in_proj_")
                for name, part in zip("qkv", value.chunk(3), strict=True):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = part
                continue
            module, param = rest.rsplit(".", 1)
            out[f"{prefix}{HF_BLOCK[module]}.{param}"] = value
            continue
        module, _, param = key.partition(".")
        out[HF_TOP.get(key) or f"{HF_TOP[module]}.{param}"] = value
    return out


def encoders(root: Path, kinds: list[str]) -> dict[str, object]:
    """The three families' encoders of one checkpoint, each through the project's builder."""
    from safetensors.torch import save_file

    folder, state = openai_checkpoint(root)
    hf_dir = hf_checkpoint(root, state)
    timm_file = root / "openai.safetensors"
    save_file(state, str(timm_file))
    common = [f"encoder.features=[{','.join(kinds)}]"]
    overrides = {
        "hf": ["encoder=hf", f"encoder.model={hf_dir}", f"encoder.preprocess={{size: {RES}}}"],
        "open_clip": ["encoder=dfn5b_h14", f"encoder.model={folder}", f"encoder.resolution={RES}",
                      f"encoder.width={WIDTH}"],
        "timm": ["encoder=timm", f"encoder.model={TIMM_ARCH}", f"encoder.checkpoint={timm_file}",
                 f"++encoder.model_kwargs={hydra_dict(TIMM_KWARGS)}", f"encoder.resolution={RES}",
                 f"encoder.width={WIDTH}"],
    }  # fmt: skip
    return {
        family: make(compose_cfg([*args, *common]).encoder, device="cpu", dtype="float32")
        for family, args in overrides.items()
    }


def test_one_openai_clip_state_dict_gives_one_tensor_per_kind_in_every_family(tmp_path) -> None:
    """Every kind but `projected` (timm has none; tests/test_layers.py checks it), the layer
    kinds and the token kinds (every token: 1 + 3 x 3 of them) too."""
    kinds = [k for k in KINDS if k != "projected"] + ["cls.l0", "mean.l-2", "cls+mean.l2",
                                                      "tokens.l1"]  # fmt: skip
    got = {family: enc.embed_kinds(torch.randn(3, 3, RES, RES, generator=torch.Generator()
                                               .manual_seed(0)))
           for family, enc in encoders(tmp_path, kinds).items()}  # fmt: skip
    widths = {"pooler_output": 1, "cls": 1, "mean": 1, "cls+mean": 2, "last4": 5, "cls.l0": 1,
              "mean.l-2": 1, "cls+mean.l2": 2}  # fmt: skip
    tokens = 1 + (RES // PATCH) ** 2
    shapes = {k: (3, widths[k] * WIDTH) if k in widths else (3, tokens, WIDTH) for k in kinds}
    assert {k: tuple(v.shape) for k, v in got["hf"].items()} == shapes
    assert torch.equal(got["hf"]["tokens"][:, 0], got["hf"]["cls"])
    diffs = {f"{kind} {family}": (got[family][kind] - got["hf"][kind]).abs().max().item()
             for kind in kinds for family in ("open_clip", "timm")}  # fmt: skip
    assert {k: f"{d:.1e}" for k, d in diffs.items() if d > TOL} == {}, "differs from hf"


def age(cache: Path) -> dict[str, Path]:
    """Every finished entry as the code before issue 23 wrote it: its fingerprint without the
    kind's definition number, in the directory that fingerprint names. `kind/split` -> path."""
    from probe.features.cache import digest

    out = {}
    for meta_path in sorted(cache.rglob("meta.json")):
        meta = json.loads(meta_path.read_text())
        fp = meta["fingerprint"]
        fp["encoder"].pop("feature_definition", None)
        meta_path.write_text(json.dumps(meta))
        entry = meta_path.parent
        old = entry.rename(entry.with_name(f"{fp['split']}-{digest(fp)[:16]}"))
        out[f"{fp['encoder']['feature']}/{fp['split']}"] = old
    return out


def test_entries_of_the_old_token_kinds_are_never_reused(tiny, dirs) -> None:
    """A `cls` entry extracted when `cls` of CLIP was the token before `post_layernorm` is not
    found for today's `cls`; the `pooler_output` entry of the same pass still is."""
    from probe.core.errors import ProbeError
    from probe.features.stage import cache_entries
    from probe.run import run

    base = [*dirs, "encoder=hf", f"encoder.model={tiny['clip_vision_model']}"]
    run(compose_cfg([*base, "stage=extract", "encoder.features=[pooler_output,cls]"]))
    old = age(Path(compose_cfg(base).cache_dir))
    assert sorted(old) == ["cls/test", "cls/train", "pooler_output/test", "pooler_output/train"]
    cfg = compose_cfg(base)
    for split, entry in cache_entries(cfg, ["train", "test"], "float32").items():
        assert entry.path == old[f"pooler_output/{split}"] and not entry.problems()
    with pytest.raises(ProbeError, match="stage=probe needs cached features"):
        run(compose_cfg([*base, "stage=probe", "encoder.feature=cls"]))


def open_clip_encoder(path: Path, *overrides: str):
    cfg = compose_cfg(["encoder=dfn5b_h14", f"encoder.model={path}", f"encoder.resolution={RES}",
                       "encoder.width=null", *overrides])  # fmt: skip
    return make(cfg.encoder, device="cpu", dtype="float32")


def test_open_clip_ln_after_pool_tower_applies_ln_post_to_every_token(tmp_path) -> None:
    """A CLIPA-style tower (`pool_type: avg`, `final_ln_after_pool`: open_clip 3.3.0
    transformer.py lines 816-818 norm the pooled mean only) gives the token kinds `ln_post` of
    every token, as its own `forward_intermediates(normalize_intermediates=True)` does."""
    path, _ = openai_checkpoint(tmp_path, pool_type="avg", final_ln_after_pool=True, no_ln_pre=True)
    x, want = open_clip_kinds(path, RES)
    got = open_clip_encoder(path, f"encoder.features=[{','.join(want)}]").embed_kinds(x)
    for kind, value in want.items():
        assert (got[kind] - value).abs().max().item() <= TOL, kind
    assert (got["mean"] - got["pooler_output"]).abs().max().item() > 1e-3


def test_open_clip_attention_pooled_tower_gives_pooler_output_only(tmp_path) -> None:
    """With `attn_pool` (CoCa), `ln_post` has the pooler's width and follows it (open_clip
    3.3.0 transformer.py lines 813-814): its tokens have no final norm, so no token kind (its
    projection head still gives `projected`)."""
    from probe.core.errors import ProbeError

    path, _ = openai_checkpoint(tmp_path, attentional_pool=True, attn_pooler_queries=4)
    with pytest.raises(ProbeError, match=r"feature=cls is not available.*can give: pooler_output, "
                       r"projected$"):  # fmt: skip
        open_clip_encoder(path, "encoder.feature=cls")
    x = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    assert open_clip_encoder(path).embed(x).shape == (2, EMBED)


def test_hf_token_kinds_only_where_the_final_norm_is_placed(tmp_path) -> None:
    """ViT's `last_hidden_state` is after its `layernorm` (transformers 5.24.0
    models/vit/modeling_vit.py line 384); a model type hf.py has not placed gives
    `pooler_output` only (ConvNeXt: no tokens at all)."""
    import transformers as tf

    from probe.core.errors import ProbeError

    tf.ViTModel(tf.ViTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                             intermediate_size=64, image_size=32, patch_size=16)).save_pretrained(
        tmp_path / "vit")  # fmt: skip
    tf.ConvNextModel(tf.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
                     ).save_pretrained(tmp_path / "convnext")  # fmt: skip
    args = ["encoder=hf", "encoder.preprocess={size: 32}"]
    vit = make(compose_cfg([*args, f"encoder.model={tmp_path / 'vit'}",
                            "encoder.features=[cls,mean]"]).encoder, dtype="float32")  # fmt: skip
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = tf.ViTModel.from_pretrained(tmp_path / "vit").eval()(pixel_values=x)
    got = vit.embed_kinds(x)
    assert (got["cls"] - hidden.last_hidden_state[:, 0]).abs().max().item() <= TOL
    assert (got["mean"] - hidden.last_hidden_state[:, 1:].mean(1)).abs().max().item() <= TOL
    with pytest.raises(ProbeError, match=r"convnext, a model type whose final norm hf.py does "
                       r"not place.*can give: pooler_output$"):  # fmt: skip
        make(compose_cfg([*args, f"encoder.model={tmp_path / 'convnext'}",
                          "encoder.feature=mean"]).encoder)  # fmt: skip
