"""Preprocessing equals the reference transforms (tests/reference.py, PIL only) to 1e-5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import compose_cfg, config_names
from omegaconf import OmegaConf
from PIL import Image
from reference import OPENAI_MEAN, OPENAI_STD, openai_reference, reference, sample_photos

from probe.core.errors import ProbeError
from probe.encoders.preprocess import build_transform, preprocess_from_hf, to_rgb

TOL = 1e-5
OPENAI = {"mode": "shortest", "interpolation": "bicubic", "mean": OPENAI_MEAN, "std": OPENAI_STD}


def preprocess_blocks() -> list[str]:
    """Every encoder config with an explicit preprocess block."""
    return [
        n
        for n in config_names("encoder")
        if compose_cfg([f"encoder={n}"]).encoder.get("preprocess")
    ]


def ours(image: Image.Image, block: dict) -> np.ndarray:
    return build_transform(**block)(image).numpy()


def assert_matches(image: Image.Image, block: dict) -> None:
    got, want = ours(image, block), reference(image, block)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOL


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return sample_photos()


def test_every_model_config_has_a_preprocess_block() -> None:
    names = set(preprocess_blocks())
    assert {"mlcd_b32", "mlcd_l14", "clip_l14", "siglip_so400m", "dfn5b_h14"} <= names
    assert {f"mlcd_bigg14_{r}" for r in (224, 336, 448)} <= names
    assert {"clip_b16", "dinov2_l14", "dinov2_g14", "eva02_l14"} <= names
    # siglip2_so400m reads its checkpoint's preprocessor_config.json (tested in test_encoders)
    assert compose_cfg(["encoder=siglip2_so400m"]).encoder.preprocess is None


@pytest.mark.parametrize("name", preprocess_blocks())
def test_config_transform_equals_reference_on_photos(name: str, photos) -> None:
    enc = compose_cfg([f"encoder={name}"]).encoder
    block = OmegaConf.to_container(enc.preprocess, resolve=True)
    assert block["size"] == enc.resolution
    for photo in photos:
        assert_matches(photo, block)


def test_protocol_values_of_the_blocks() -> None:
    siglip = compose_cfg(["encoder=siglip_so400m"]).encoder.preprocess
    assert (siglip.size, siglip.mode, siglip.crop) == (384, "squash", None)
    assert list(siglip.mean) == [0.5] * 3 and list(siglip.std) == [0.5] * 3
    for name in ("mlcd_l14", "clip_l14", "mlcd_bigg14_336"):
        block = compose_cfg([f"encoder={name}"]).encoder.preprocess
        assert (block.size, block.crop, block.mode) == (336, 336, "shortest")
        assert tuple(block.mean) == OPENAI_MEAN and tuple(block.std) == OPENAI_STD


def test_resolution_override_moves_the_transform() -> None:
    block = compose_cfg(["encoder=mlcd_l14", "encoder.resolution=224"]).encoder.preprocess
    assert (block.size, block.crop) == (224, 224)


@pytest.mark.parametrize("size", [(224, 227), (227, 224), (300, 97), (97, 300), (225, 224)])
def test_crop_offset_rounds_like_torchvision(size: tuple[int, int]) -> None:
    """Odd margins hit Python's round-half-to-even: e.g. a 3 px margin starts the crop at 2."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    assert_matches(image, {**OPENAI, "size": 224, "crop": 224})


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK"])
def test_other_modes(photos, mode: str) -> None:
    image = photos[0].crop((10, 0, 310, 200))
    if mode == "RGBA":
        rgba = np.dstack(
            [np.asarray(image), np.linspace(0, 255, 300, dtype=np.uint8)[None].repeat(200, 0)]
        )
        image = Image.fromarray(rgba)
        # alpha is dropped (OpenAI's convert("RGB")): the colour channels are used as stored
        ref = openai_reference(Image.fromarray(rgba[..., :3].copy()), 64)
    else:
        image = image.convert(mode)
        ref = openai_reference(image.convert("RGB"), 64)
    got = ours(image, {**OPENAI, "size": 64, "crop": 64})
    assert got.shape == (3, 64, 64)
    assert np.abs(got - ref).max() <= TOL


def test_sixteen_bit_png(tmp_path: Path, photos) -> None:
    gray = np.asarray(photos[1].convert("L"), dtype=np.uint16)[:200, :260] * 257 + 3
    path = tmp_path / "deep.png"
    Image.fromarray(gray).save(path)
    image = Image.open(path)
    assert image.mode.startswith("I") and np.asarray(image).max() > 255
    got = ours(image, {**OPENAI, "size": 96, "crop": 96})
    assert np.abs(got - reference(image, {**OPENAI, "size": 96, "crop": 96})).max() <= TOL
    # 16-bit is scaled, not clipped: the image keeps its contrast
    assert np.asarray(to_rgb(image)).std() > 20


def test_sixteen_bit_rgb_png(tmp_path: Path, photos) -> None:
    """PIL opens 16-bit RGB PNGs as 8-bit RGB; they must still go through."""
    import zlib

    arr = np.asarray(photos[0])[:40, :50].astype(">u2") * 257
    raw = b"".join(b"\x00" + row.tobytes() for row in arr)
    path = tmp_path / "rgb48.png"
    path.write_bytes(_png(50, 40, 16, 2, zlib.compress(raw)))
    image = Image.open(path)
    got = ours(image, {**OPENAI, "size": 32, "crop": 32})
    ref = openai_reference(Image.fromarray(np.asarray(photos[0])[:40, :50].copy()), 32)
    assert np.abs(got - ref).max() <= TOL


def _png(width: int, height: int, depth: int, color: int, idat: bytes) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_preprocess_from_hf_reads_clip_and_siglip(tmp_path: Path) -> None:
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    CLIPImageProcessor(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}
    ).save_pretrained(tmp_path / "clip")
    SiglipImageProcessor(size={"height": 384, "width": 384}).save_pretrained(tmp_path / "siglip")
    clip = preprocess_from_hf(tmp_path / "clip")
    assert (clip["size"], clip["crop"], clip["mode"], clip["interpolation"]) == (
        336,
        [336, 336],
        "shortest",
        "bicubic",
    )
    assert tuple(clip["mean"]) == pytest.approx(OPENAI_MEAN)
    siglip = preprocess_from_hf(tmp_path / "siglip")
    assert (siglip["size"], siglip["mode"], siglip["crop"]) == ([384, 384], "squash", None)
    assert siglip["mean"] == [0.5] * 3


def test_bad_preprocess_values_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="preprocess.mode='crop'"):
        build_transform(size=32, mode="crop")
    with pytest.raises(ProbeError, match="preprocess.interpolation='cubic'"):
        build_transform(size=32, interpolation="cubic")
    with pytest.raises(ProbeError, match="no preprocessor_config.json"):
        preprocess_from_hf(tmp_path)
    with pytest.raises(ProbeError, match=r"preprocess.crop_pct=1.5 must be in \(0, 1\]"):
        build_transform(size=32, crop_pct=1.5)
    with pytest.raises(ProbeError, match="preprocess.crop=28 with crop_pct=0.875"):
        build_transform(size=32, crop=28, crop_pct=0.875)


def test_dinov2_block_is_dinov2s_eval_transform() -> None:
    """dinov2/data/transforms.py `make_classification_eval_transform`: Resize(256, bicubic),
    CenterCrop(224), ImageNet mean/std."""
    block = compose_cfg(["encoder=dinov2_l14"]).encoder.preprocess
    transform = build_transform(**OmegaConf.to_container(block, resolve=True))
    resize, crop = transform.transforms[1], transform.transforms[2]
    assert (resize.size, resize.interpolation.value, crop.size) == (256, "bicubic", (224, 224))
    assert list(block.mean) == [0.485, 0.456, 0.406] and list(block.std) == [0.229, 0.224, 0.225]
