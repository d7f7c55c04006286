"""Features from any block (`cls.l-2`, `mean.l0`, `cls+mean.l1`) and after the projection head
(`projected`), against the libraries' own outputs, on the tiny saved models of tests/tiny.py.

Layer kinds: transformers' `output_hidden_states=True` (`hidden_states[N + 1]` is block N's
output) with the model's final norm applied; open_clip's and timm's `forward_intermediates`
with their own norm flag. `projected`: `CLIPModel.get_image_features`,
`SiglipModel.get_image_features`, open_clip's `encode_image`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import compose_cfg
from tiny import TIMM_GENERIC, TIMM_KWARGS, hydra_dict, timm_checkpoint, timm_model

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.core.names import check_name
from probe.encoders import kinds as K
from probe.report.record import name_overrides, result_name

TOL = 1e-5
RES = 32
LAYERS = ["cls.l0", "mean.l-2", "cls+mean.l1", "cls.l-1", "mean.l3"]  # 4 blocks: 0..3
NO_PROJECTION = r"projected .* not available for .*no projection head; the models with one: hf"


def pixels() -> torch.Tensor:
    return torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(0))


def hf(path: Path, *extra: str):
    cfg = compose_cfg(["encoder=hf", f"encoder.model={path}", "encoder.preprocess={size: 32}",
                       *extra])  # fmt: skip
    return make(cfg.encoder, device="cpu", dtype="float32")


def features(kinds: list[str]) -> str:
    return f"encoder.features=[{','.join(kinds)}]"


def openclip_encoder(path: Path, *extra: str):
    cfg = compose_cfg(["encoder=dfn5b_h14", f"encoder.model={path}", f"encoder.resolution={RES}",
                       "encoder.width=32", *extra])  # fmt: skip
    return make(cfg.encoder, device="cpu", dtype="float32")


def timm_encoder(root: Path, arch: str, *extra: str):
    args = ["encoder=timm", f"encoder.model={arch}", f"encoder.resolution={RES}",
            f"++encoder.model_kwargs={hydra_dict(TIMM_KWARGS)}",
            f"encoder.checkpoint={timm_checkpoint(root, arch)}"]  # fmt: skip
    return make(compose_cfg([*args, *extra]).encoder, device="cpu", dtype="float32")


def cut(kind: str, tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """A layer kind's base on one normed token sequence, written out (not `kinds.cut`)."""
    base = kind.split(".l")[0]
    cls, mean = tokens[:, 0], tokens[:, prefix:].mean(1)
    return {"cls": cls, "mean": mean, "cls+mean": torch.cat([cls, mean], 1)}[base]


def block(kind: str) -> int:
    return int(kind.split(".l")[1])


def check(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    diffs = {k: (got[k] - v).abs().max().item() for k, v in want.items()}
    assert {k: f"{d:.1e}" for k, d in diffs.items() if d > TOL} == {}


# -- layer kinds against each library's intermediate outputs ----------------------------------
@pytest.mark.parametrize(
    "model_type",
    ["clip_vision_model", "mlcd_vision_model", "dinov2", "dinov2_with_registers",
     "siglip_vision_model"],
)  # fmt: skip
def test_hf_layer_kinds_are_normed_hidden_states(model_type: str, tiny) -> None:
    import transformers as tf

    cls = {"clip_vision_model": tf.CLIPVisionModel, "mlcd_vision_model": tf.MLCDVisionModel,
           "dinov2": tf.Dinov2Model, "dinov2_with_registers": tf.Dinov2WithRegistersModel,
           "siglip_vision_model": tf.SiglipVisionModel}[model_type]  # fmt: skip
    net = cls.from_pretrained(tiny[model_type]).eval()
    norm = net.layernorm if model_type.startswith("dinov2") else net.post_layernorm
    no_cls = model_type == "siglip_vision_model"
    prefix = 0 if no_cls else 1 + getattr(net.config, "num_register_tokens", 0)
    base = "mean" if no_cls else "cls"
    kinds = [k for k in LAYERS if not no_cls or k.startswith("mean")] + [f"{base}.l-1"]
    x = pixels()
    with torch.no_grad():
        hidden = net(pixel_values=x, output_hidden_states=True).hidden_states
    assert len(hidden) == 5  # the embeddings, then each of the 4 blocks
    want = {k: cut(k, norm(hidden[block(k) % 4 + 1]), prefix) for k in kinds}
    got = hf(tiny[model_type], features([*dict.fromkeys(kinds), base])).embed_kinds(x)
    check(got, want)
    assert torch.equal(got[f"{base}.l-1"], got[base]), "the last block's is the plain kind's"
    alone = hf(tiny[model_type], f"encoder.feature={kinds[1]}").embed(x)
    assert torch.equal(alone, got[kinds[1]]), "one pass differs from its own pass"


def test_open_clip_layer_kinds_are_its_forward_intermediates(tiny) -> None:
    import open_clip

    path = tiny["VisionTransformer"]
    visual = open_clip.create_model(f"local-dir:{path}").visual.eval()
    x = pixels()
    with torch.no_grad():
        out = visual.forward_intermediates(x, indices=[0, 1, 2, 3], normalize_intermediates=True,
                                           output_fmt="NLC", output_extra_tokens=True)  # fmt: skip
    pairs = zip(out["image_intermediates_prefix"], out["image_intermediates"], strict=True)
    blocks = [torch.cat([p, s], 1) for p, s in pairs]
    want = {k: cut(k, blocks[block(k)], 1) for k in LAYERS}
    got = openclip_encoder(path, features([*LAYERS, "cls"])).embed_kinds(x)
    check(got, want)
    assert torch.equal(got["cls.l-1"], got["cls"])


TIMM_CASES = {  # arch: prefix tokens (class + registers; none for the SigLIP tower)
    TIMM_GENERIC: 1,
    "vit_small_patch14_reg4_dinov2.lvd142m": 5,
    "eva02_large_patch14_clip_336.merged2b": 1,
    "vit_base_patch16_siglip_224.webli": 0,
}


@pytest.mark.parametrize("arch", list(TIMM_CASES))
def test_timm_layer_kinds_are_its_forward_intermediates(arch: str, timm_dir: Path) -> None:
    net = timm_model(arch, timm_checkpoint(timm_dir, arch))
    prefix = TIMM_CASES[arch]
    assert net.num_prefix_tokens == prefix
    base = "cls" if prefix else "mean"
    kinds = [k for k in LAYERS if prefix or k.startswith("mean")] + [f"{base}.l-1"]
    x = pixels()
    with torch.no_grad():
        inter = net.forward_intermediates(x, indices=[0, 1, 2, 3], norm=True, output_fmt="NLC",
                                          return_prefix_tokens=bool(prefix),
                                          intermediates_only=True)  # fmt: skip
    blocks = [torch.cat([p, s], 1) for s, p in inter] if prefix else inter
    want = {k: cut(k, blocks[block(k)], prefix) for k in kinds}
    got = timm_encoder(timm_dir, arch, features([*dict.fromkeys(kinds), base])).embed_kinds(x)
    check(got, want)
    assert torch.equal(got[f"{base}.l-1"], got[base])


# -- projected against each library's image embedding -----------------------------------------
def test_hf_clip_projected_is_get_image_features(tiny) -> None:
    """From the two-tower checkpoint, without its text tower; the other kinds are unchanged."""
    import transformers as tf

    full = tf.CLIPModel.from_pretrained(tiny["clip"]).eval()
    x = pixels()
    with torch.no_grad():
        want = full.get_image_features(pixel_values=x).pooler_output
    encoder = hf(tiny["clip"], features(["projected", "pooler_output", "cls.l2"]))
    assert "text_model" not in {n.split(".")[0] for n, _ in encoder.forward.net.named_modules()}
    got = encoder.embed_kinds(x)
    assert got["projected"].shape == (2, 16)  # projection_dim, not the width
    check(got, {"projected": want})
    plain = hf(tiny["clip"], features(["pooler_output", "cls.l2"])).embed_kinds(x)
    assert all(torch.equal(plain[k], got[k]) for k in plain)


@pytest.mark.parametrize("key", ["siglip", "siglip_vision_model"])
def test_hf_siglip_projected_is_its_pooled_output(key: str, tiny) -> None:
    """SigLIP has no separate projection: its image embedding is the attention-pool output."""
    import transformers as tf

    full = tf.SiglipModel.from_pretrained(tiny["siglip"]).eval()
    x = pixels()
    got = hf(tiny[key], features(["projected", "pooler_output"])).embed_kinds(x)
    assert torch.equal(got["projected"], got["pooler_output"])
    if key == "siglip":
        with torch.no_grad():
            want = full.get_image_features(pixel_values=x).pooler_output
        check(got, {"projected": want})


def test_open_clip_projected_is_encode_image(tiny) -> None:
    import open_clip

    path = tiny["VisionTransformer"]
    model = open_clip.create_model(f"local-dir:{path}").eval()
    x = pixels()
    with torch.no_grad():
        want = model.encode_image(x)
    encoder = openclip_encoder(path, features(["projected", "pooler_output", "mean.l0"]))
    got = encoder.embed_kinds(x)
    assert got["projected"].shape == (2, 16)
    check(got, {"projected": want})
    assert torch.equal(got["pooler_output"], encoder.forward.visual(x))  # still unprojected


# -- bad input: one line, before any extraction -----------------------------------------------
@pytest.mark.parametrize("kind", ["cls.l03", "cls.L2", "cls.l-0", "cls.l+1", "last4.l1",
                                  "pooler_output.l1", "cls.l", "projected.l1"])  # fmt: skip
def test_malformed_layer_kinds_are_unknown(kind: str) -> None:
    with pytest.raises(ProbeError, match=rf"'{re.escape(kind)}' unknown; allowed kinds: .*cls\.lN"):
        K.requested("pooler_output", ["pooler_output", kind])


def test_a_block_out_of_range_fails_before_loading_weights(tiny, monkeypatch) -> None:
    import probe.encoders.hf as hf_family

    def never(*_a, **_k):
        raise AssertionError("the weights were loaded before the check")

    monkeypatch.setattr(hf_family, "load_model", never)
    for kind in ("cls.l4", "mean.l-5"):
        with pytest.raises(ProbeError, match=rf"feature={kind}: .* has 4 blocks, so N in "
                           r"(cls|mean)\.lN is 0\.\.3 \(or -4\.\.-1 from the end\)"):  # fmt: skip
            hf(tiny["dinov2"], f"encoder.feature={kind}")


def test_a_block_out_of_range_in_open_clip_and_timm(tiny, timm_dir: Path) -> None:
    with pytest.raises(ProbeError, match=r"cls\.l4: .*open_clip.* has 4 blocks"):
        openclip_encoder(tiny["VisionTransformer"], "encoder.feature=cls.l4")
    with pytest.raises(ProbeError, match=r"mean\.l-9: .*timm.* has 4 blocks"):
        timm_encoder(timm_dir, TIMM_GENERIC, "encoder.features=[cls,mean.l-9]")


def test_projected_without_a_projection_names_the_models_with_one(tiny, timm_dir: Path) -> None:
    for key in ("dinov2", "clip_vision_model", "mlcd_vision_model"):
        with pytest.raises(ProbeError, match=NO_PROJECTION):
            hf(tiny[key], "encoder.features=[pooler_output,projected]")
    with pytest.raises(ProbeError, match=NO_PROJECTION):
        timm_encoder(timm_dir, TIMM_GENERIC, "encoder.feature=projected")


def test_a_layer_kind_of_a_model_without_tokens(tiny, tmp_path: Path) -> None:
    import transformers as tf

    tf.ConvNextModel(tf.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
                     ).save_pretrained(tmp_path / "convnext")  # fmt: skip
    with pytest.raises(ProbeError, match=r"feature=mean\.l0 is not available .*convnext.* "
                       r"can give: pooler_output$"):  # fmt: skip
        hf(tmp_path / "convnext", "encoder.feature=mean.l0")
    with pytest.raises(ProbeError, match=r"feature=cls\.l0 is not available .*no CLS token.* "
                       r"can give: pooler_output, projected, mean, tokens, mean\.lN, "
                       r"tokens\.lN$"):  # fmt: skip
        hf(tiny["siglip_vision_model"], "encoder.feature=cls.l0")


def test_a_bad_layer_fails_the_run_before_any_extraction(tiny, dirs, tmp_path: Path) -> None:
    from probe.run import run

    args = [*dirs, "encoder=hf", f"encoder.model={tiny['clip_vision_model']}"]
    with pytest.raises(ProbeError, match=r"has 4 blocks"):
        run(compose_cfg([*args, "encoder.features=[pooler_output,cls.l4]"]))
    assert not list((tmp_path / "cache").rglob("*.npy"))


# -- several layers from one pass, one cache entry each; names; the cache fingerprint ---------
def test_layers_and_projected_from_one_pass_each_its_own_entry(tiny, tmp_path: Path) -> None:
    from test_timm import image_folder

    from probe.run import run

    kinds = ["projected", "cls.l0", "mean.l-2"]
    data = image_folder(tmp_path / "photos")  # 8 train and 8 test JPEGs
    cache = f"cache_dir={tmp_path / 'cache'}"
    run(compose_cfg(["encoder=hf", f"encoder.model={tiny['clip']}", "dataset=imagefolder",
                     "encoder.preprocess={size: 32, crop: 32}", f"dataset.root={data}", cache,
                     "stage=extract", features(kinds)]))  # fmt: skip
    found = {}
    for meta in (tmp_path / "cache").rglob("meta.json"):
        fp = json.loads(meta.read_text())["fingerprint"]
        found[f"{fp['split']}/{fp['encoder']['feature']}"] = fp["encoder"].get("feature_definition")
    assert found == {f"{s}/{k}": (None if k == "projected" else 2) for s in ("train", "test")
                     for k in kinds}  # fmt: skip


def test_result_names_of_layer_kinds_round_trip() -> None:
    cases = {
        ("encoder.feature=cls.l-2",): "dinov2_l14@cls.l-2",
        ("encoder.feature=cls+mean.l12", "probe.normalize=l2"): "dinov2_l14@cls+mean.l12@l2",
        ("encoder.feature=projected", "probe.normalize=l2"): "dinov2_l14@projected@l2",
        ("encoder.feature=mean.l0", "protocol=dinov2"): "dinov2_l14@mean.l0@dinov2",
    }
    for extra, name in cases.items():
        cfg = compose_cfg(["encoder=dinov2_l14", *extra])
        card = cfg.protocol.name
        assert result_name(cfg.encoder, cfg.probe, protocol=card) == name
        check_name(name, key="encoder.name")  # a plain folder name
        back = compose_cfg(name_overrides(name))
        assert result_name(back.encoder, back.probe, protocol=back.protocol.name) == name


def test_a_grid_over_layers_sizes_and_files_each_kind(tmp_path: Path) -> None:
    from probe.launch.grid import resolve_runs
    from probe.launch.sizes import run_size

    runs = [["encoder=dinov2_l14", "dataset=cifar100", f"encoder.feature={k}",
             "encoder.features=[cls+mean.l-4,mean.l12,projected]"]
            for k in ("cls+mean.l-4", "mean.l12")]  # fmt: skip
    resolved = resolve_runs(runs, results_dir=tmp_path)
    assert [r.result.parent.name for r in resolved] == ["dinov2_l14@cls+mean.l-4",
                                                        "dinov2_l14@mean.l12"]  # fmt: skip
    size = run_size(resolved[0].config)
    assert size.cache_bytes == 60_000 * 1024 * (2 + 1 + 1) * 4  # every kind the pass caches
    plain = compose_cfg(["encoder=dinov2_l14", "dataset=cifar100", "encoder.feature=cls+mean"])
    assert size.probe == run_size(plain).probe  # probed 2 x 1024 wide, as cls+mean is


def test_old_kinds_keep_their_fingerprint() -> None:
    """The digests of the five kinds' encoder fingerprints as the code before layer kinds wrote
    them (computed at 5939a12); a layer kind counts with its base's definition number."""
    from probe.features.cache import digest, fingerprint

    pinned = {"pooler_output": "122ece7c1ab3bd03", "cls": "0cd905e7a1661747",
              "mean": "4b2d982ecb0375ec", "cls+mean": "6ab507c55ffba9fb",
              "last4": "6f8adbf2a4722cd2"}  # fmt: skip

    def encoder_fp(kind: str) -> dict:
        enc = {"_target_": "probe.encoders.hf.build", "name": "dinov2_l14", "revision": "main",
               "model": "facebook/dinov2-large", "feature": kind, "features": None,
               "width": 1024, "resolution": 224}  # fmt: skip
        return fingerprint(encoder=enc, dataset={"name": "d"}, split="train", dtype="float32")

    assert {k: digest(encoder_fp(k)["encoder"])[:16] for k in pinned} == pinned
    assert encoder_fp("cls+mean.l-2")["encoder"]["feature_definition"] == 2
    assert "feature_definition" not in encoder_fp("projected")["encoder"]
    assert K.definition("mean.l3") == K.DEFINITIONS["mean"]
