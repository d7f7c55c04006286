"""The timm family: tiny random timm models saved as safetensors, loaded back from disk, and
compared with timm's own pipeline (`resolve_data_config` + `create_transform` + `forward_head(
pre_logits=True)`) on real image files read through the image-folder dataset family."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg, run_cli_without
from PIL import Image
from reference import sample_photos
from tiny import TIMM_GENERIC, TIMM_KWARGS, hydra_dict, timm_checkpoint, timm_model

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.encoders.preprocess import build_transform, preprocess_from_timm
from probe.run import run

TOL = 1e-5
OVERLAY = "++encoder.pretrained_cfg_overlay={input_size:[3,32,32]}"
REG_ARCH = "vit_small_patch14_reg4_dinov2.lvd142m"  # 4 register tokens: 5 prefix tokens
FC_NORM_ARCH = "vit_small_patch16_224.augreg_in21k_ft_in1k"  # built with global_pool=avg
CNN_ARCH, CNN_KWARGS = "convnext_atto", {"dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1]}


def timm_args(root: Path, arch: str = TIMM_GENERIC, kwargs: dict | None = None) -> list[str]:
    kwargs = TIMM_KWARGS if kwargs is None else kwargs
    return ["encoder=timm", f"encoder.model={arch}", f"++encoder.model_kwargs={hydra_dict(kwargs)}",
            f"encoder.checkpoint={timm_checkpoint(root, arch, kwargs)}"]  # fmt: skip


def build(*overrides: str):
    return make(compose_cfg(list(overrides)).encoder, device="cpu", dtype="float32")


def image_folder(root: Path) -> Path:
    """train/ and test/ class folders of JPEG crops of the two sample photos (many shapes)."""
    boxes = [(0, 0, 640, 427), (100, 20, 300, 400), (0, 50, 600, 150), (321, 11, 500, 333)]
    for split, offset in (("train", 0), ("test", 7)):
        for label, photo in zip(("china", "flower"), sample_photos(), strict=True):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i, (a, b, c, d) in enumerate(boxes):
                photo.crop((a + offset, b, c, d)).save(folder / f"{i}.jpg", quality=90)
    return root


def test_cached_features_equal_timms_own_pipeline(timm_dir: Path, tmp_path: Path) -> None:
    """The done-when: cache entries of a tiny ViT equal timm's transform + pre-logits forward."""
    from timm.data import create_transform, resolve_model_data_config

    data = image_folder(tmp_path / "photos")
    cfg = compose_cfg([*timm_args(timm_dir), OVERLAY, "dataset=imagefolder", f"dataset.root={data}",
                       f"cache_dir={tmp_path / 'cache'}", "stage=extract"])  # fmt: skip
    run(cfg)
    net = timm_model(TIMM_GENERIC, timm_dir / f"{TIMM_GENERIC}.safetensors",
                     pretrained_cfg_overlay={"input_size": (3, 32, 32)})  # fmt: skip
    data_config = resolve_model_data_config(net)
    assert data_config["crop_pct"] == 0.9 and data_config["input_size"] == (3, 32, 32)
    transform = create_transform(**data_config, is_training=False)
    metas = sorted((tmp_path / "cache").rglob("meta.json"))
    assert len(metas) == 2
    for meta in metas:
        split = meta.parent.name.split("-")[0]
        files = sorted((data / split).rglob("*.jpg"))
        x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
        with torch.no_grad():
            want = net.forward_head(net.forward_features(x), pre_logits=True).numpy()
        got = np.load(meta.parent / "features.npy")
        assert got.shape == (8, 32)
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_timm_kinds_equal_timm_outputs(timm_dir: Path) -> None:
    """Register tokens are prefix tokens: `mean` and `last4` skip all five (class + 4)."""
    net = timm_model(REG_ARCH, timm_checkpoint(timm_dir, REG_ARCH))
    assert net.num_prefix_tokens == 5
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = net.forward_features(x)
        inter = net.forward_intermediates(x, indices=4, return_prefix_tokens=True, norm=True,
                                          output_fmt="NLC", intermediates_only=True)  # fmt: skip
    mean = tokens[:, 5:].mean(1)
    want = {
        "pooler_output": net.forward_head(tokens, pre_logits=True), "cls": tokens[:, 0],
        "mean": mean, "cls+mean": torch.cat([tokens[:, 0], mean], 1),
        "last4": torch.cat([*(p[:, 0] for _, p in inter), inter[-1][0].mean(1)], 1),
    }  # fmt: skip
    encoder = build(*timm_args(timm_dir, REG_ARCH), f"encoder.features=[{','.join(want)}]",
                    "encoder.resolution=32")  # fmt: skip
    got = encoder.embed_kinds(x)
    for kind, value in want.items():
        assert (got[kind] - value).abs().max().item() <= TOL, kind
    assert got["last4"].shape == (2, 160)


def test_fc_norm_model_applies_fc_norm_to_every_token(timm_dir: Path) -> None:
    """With `global_pool='avg'` timm's ViT has no `norm` (an Identity) and puts `fc_norm` after
    pooling (timm 1.0.31 vision_transformer.py lines 839, 918, 941, 1339-1340): the token kinds
    take `fc_norm` of every token, so `mean` is not `pooler_output` (norm, then mean)."""
    kwargs = {**TIMM_KWARGS, "global_pool": "avg"}
    net = timm_model(FC_NORM_ARCH, timm_checkpoint(timm_dir, FC_NORM_ARCH, kwargs), kwargs)
    assert isinstance(net.norm, torch.nn.Identity) and isinstance(net.fc_norm, torch.nn.LayerNorm)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    outputs: list[torch.Tensor] = []
    for block in net.blocks[-4:]:
        block.register_forward_hook(lambda _m, _a, out: outputs.append(net.fc_norm(out)))
    with torch.no_grad():
        raw = net.forward_features(x)
        tokens = net.fc_norm(raw)
        want = {
            "pooler_output": net.forward_head(raw, pre_logits=True),
            "cls": tokens[:, 0],
            "mean": tokens[:, 1:].mean(1),
            "last4": torch.cat([*(o[:, 0] for o in outputs), outputs[-1][:, 1:].mean(1)], 1),
        }
    encoder = build(*timm_args(timm_dir, FC_NORM_ARCH, kwargs), "encoder.resolution=32",
                    f"encoder.features=[{','.join(want)}]")  # fmt: skip
    got = encoder.embed_kinds(x)
    for kind, value in want.items():
        assert (got[kind] - value).abs().max().item() <= TOL, kind
    assert (got["mean"] - got["pooler_output"]).abs().max().item() > 1e-3


def test_cnn_gives_only_pooler_output(timm_dir: Path) -> None:
    args = timm_args(timm_dir, CNN_ARCH, CNN_KWARGS)
    with pytest.raises(ProbeError, match=r"encoder.feature=cls is not available.*ConvNeXt.*"
                       r"can give: pooler_output$"):  # fmt: skip
        build(*args, "encoder.feature=cls", "encoder.resolution=64")
    net = timm_model(CNN_ARCH, timm_dir / f"{CNN_ARCH}.safetensors", CNN_KWARGS)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net.forward_head(net.forward_features(x), pre_logits=True)
    encoder = build(*args, "encoder.resolution=64", "encoder.width=64")
    assert (encoder.embed(x) - want).abs().max().item() <= TOL


@pytest.mark.parametrize("crop_pct", [0.875, 0.9, 1.0])
@pytest.mark.parametrize("crop_mode", ["center", "squash"])
def test_block_from_data_config_equals_timms_transform(crop_pct: float, crop_mode: str) -> None:
    from timm.data import create_transform

    data_config = {
        "input_size": (3, 48, 48),
        "interpolation": "bicubic",
        "crop_pct": crop_pct,
        "crop_mode": crop_mode,
        "mean": (0.4, 0.5, 0.6),
        "std": (0.2, 0.3, 0.25),
    }
    ours = build_transform(**preprocess_from_timm(data_config, model="m"))
    theirs = create_transform(**data_config, is_training=False)
    for photo in sample_photos():
        for box in [(0, 0, 640, 427), (10, 0, 210, 427), (0, 0, 640, 97)]:
            image = photo.crop(box)
            assert (ours(image) - theirs(image)).abs().max().item() <= TOL
    with pytest.raises(ProbeError, match="crop_mode='border'.*set encoder.preprocess"):
        preprocess_from_timm({**data_config, "crop_mode": "border"}, model="m")


def test_eva02_block_is_its_pretrained_cfg() -> None:
    """The config's block equals timm's data config of the real checkpoint (no download)."""
    from omegaconf import OmegaConf
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    enc = compose_cfg(["encoder=eva02_l14"]).encoder
    pretrained = get_pretrained_cfg(enc.model).to_dict()
    data_config = resolve_data_config(pretrained_cfg=pretrained)
    block = OmegaConf.to_container(enc.preprocess, resolve=True)
    assert block == preprocess_from_timm(data_config, model=enc.model)
    assert data_config["input_size"] == (3, enc.resolution, enc.resolution)


def test_checkpoint_and_resolution_errors(timm_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    with pytest.raises(ProbeError, match="encoder.checkpoint='/nowhere.safetensors': no such file"):
        build(*timm_args(timm_dir), "encoder.checkpoint=/nowhere.safetensors")
    state = load_file(str(timm_checkpoint(timm_dir, TIMM_GENERIC)))
    del state["norm.weight"]
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    with pytest.raises(ProbeError, match=r"could not build it or load.*broken.*norm.weight"):
        build(*timm_args(timm_dir), f"encoder.checkpoint={broken}")
    with pytest.raises(ProbeError, match=r"encoder.resolution=48 but .* takes \[32, 32\] px"):
        build(*timm_args(timm_dir), "encoder.resolution=48")
    with pytest.raises(ProbeError, match=r"has width 32, but .* encoder.width=1024"):
        build(*timm_args(timm_dir), "encoder.width=1024")


def test_checkpoint_file_is_fingerprinted(timm_dir: Path, tmp_path: Path) -> None:
    from probe.features.cache import digest, fingerprint

    path = tmp_path / "w.safetensors"
    path.write_bytes(timm_checkpoint(timm_dir, TIMM_GENERIC).read_bytes())
    fp = {"dataset": {"name": "d"}, "split": "train", "dtype": "float32"}
    enc = {"model": TIMM_GENERIC, "checkpoint": str(path)}
    before = digest(fingerprint(encoder=enc, **fp))
    assert before == digest(fingerprint(encoder=enc, **fp))
    path.write_bytes(path.read_bytes() + b"\0")  # re-trained weights at the same path
    assert digest(fingerprint(encoder=enc, **fp)) != before


def test_without_timm_names_the_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now fails
    with pytest.raises(ProbeError, match=r'encoder=timm needs timm.*pip install -e "\.\[timm\]"'):
        build("encoder=eva02_l14")


def test_without_timm_cli_is_one_line(dirs, tmp_path: Path) -> None:
    proc = run_cli_without("timm", ["encoder=eva02_l14", "stage=extract", *dirs], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out
    assert 'pip install -e ".[timm]"' in out
