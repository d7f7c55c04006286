"""`python -m probe.bench extract encoder=NAME [options]`: is extraction as fast as the encoder?

Prints, in one run, the encoder's forward-only ceiling (synthetic tensors already on the
device, no data loading) and the full pipeline's images/s (JPEG decode + preprocess in
DataLoader workers + forward + checksummed write into a cache entry, exactly what
`stage=extract` runs), and their ratio. The goal on a GPU is a ratio of 0.9 or more.

`--random-weights` builds the encoder's architecture from its config with random weights (no
download); `--shape` picks a known shape (`mlcd_l14`, `mlcd_bigg14_336`, or `tiny` for CI on
CPU). Hydra-style `key=value` arguments select and override the encoder config; with random
weights `encoder.feature` (one kind) and `encoder.token_pool` apply too, so
`encoder.feature=tokens` measures the token cache's path (T x D float16 rows a image).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from probe.core.images import decode

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# Architectures by config shape (docs/protocol.md encoder table), buildable without a download.
SHAPES: dict[str, tuple[str, dict[str, int]]] = {
    "mlcd_l14": ("CLIPVisionConfig", dict(hidden_size=1024, num_hidden_layers=24,
                 num_attention_heads=16, intermediate_size=4096, patch_size=14, image_size=336)),
    "mlcd_bigg14_336": ("MLCDVisionConfig", dict(hidden_size=1664, num_hidden_layers=48,
                        num_attention_heads=16, intermediate_size=8192, patch_size=14,
                        image_size=336)),
    "tiny": ("CLIPVisionConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, patch_size=8, image_size=32)),
}  # fmt: skip


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m probe.bench extract", description=__doc__)
    p.add_argument("--random-weights", action="store_true", help="build from config shape")
    p.add_argument("--shape", choices=sorted(SHAPES), help="architecture (implies random)")
    p.add_argument("--images", type=Path, help="dir of JPEGs (generated there if empty)")
    p.add_argument("--n-images", type=int, default=None, help="images for the pipeline run")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--num-workers", default="auto", help="'auto': the job's CPUs")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--iters", type=int, default=20, help="timed forward-only iterations")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    flags = [a for a in argv if a.startswith("-") or "=" not in a]
    overrides = [a for a in argv if not (a.startswith("-") or "=" not in a)]
    return p.parse_args(flags), overrides


def _encoder_cfg(overrides: list[str]) -> Any | None:
    from hydra import compose, initialize_config_dir
    from hydra.errors import MissingConfigException

    from probe.core.paths import config_dir

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=overrides).encoder
    except MissingConfigException:
        return None


def random_encoder(shape: str, enc_cfg: Any, *, device: str, dtype: str):
    """The shape's architecture, random weights, the config's preprocessing at its size, the
    config's feature kind (a CLIP-like tower: one class token, the final norm after the
    output, as `probe.encoders.hf` reads it)."""
    import transformers

    from probe.encoders import kinds as K
    from probe.encoders.base import Encoder
    from probe.encoders.hf import HFForward, final_norm_and_blocks
    from probe.encoders.preprocess import build_transform

    cls_name, kw = SHAPES[shape]
    config = getattr(transformers, cls_name)(**kw)
    model_cls = getattr(transformers, cls_name.replace("Config", "Model"))
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: a 2B-parameter init on CPU takes minutes
        net = model_cls(config).eval()
    pre = dict((enc_cfg or {}).get("preprocess") or {})
    pre = {"mode": "shortest", "interpolation": "bicubic", "mean": CLIP_MEAN, "std": CLIP_STD,
           **pre, "size": kw["image_size"], "crop": kw["image_size"]}  # fmt: skip
    kinds = K.requested(str((enc_cfg or {}).get("feature") or K.DEFAULT), None)
    norm, blocks = final_norm_and_blocks(net)
    forward = HFForward(net, kinds, prefix=1, final_norm=norm, blocks=blocks, norm_tokens=True)
    return Encoder(transform=build_transform(**pre), forward=forward, device=device, dtype=dtype,
                   feature_dim=kw["hidden_size"], kinds=kinds, prefix_tokens=1,
                   token_pool=(enc_cfg or {}).get("token_pool"))  # fmt: skip


def make_jpegs(folder: Path, n: int, *, seed: int = 0) -> list[Path]:
    """`n` ImageNet-sized JPEGs (smooth colour fields plus noise) unless `folder` has some."""
    folder.mkdir(parents=True, exist_ok=True)
    have = sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.JPEG"))
    if len(have) >= n:
        return have[:n]
    rng = np.random.default_rng(seed)
    for i in range(len(have), n):
        low = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((500, 375), Image.BICUBIC)
        noise = rng.integers(-12, 13, size=(375, 500, 3))
        arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img_{i:06d}.jpg", quality=90)
    return sorted(folder.glob("*.jpg"))[:n]


class _OpenRGB:
    def __call__(self, path: str) -> Image.Image:
        return decode(path)


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def ceiling(encoder: Any, *, batch_size: int, size: int, iters: int) -> float:
    """images/s of `embed` alone on synthetic tensors already on the device."""
    x = torch.randn(batch_size, 3, size, size, device=encoder.device)
    for _ in range(2):
        encoder.embed(x)
    _sync(encoder.device)
    start = time.perf_counter()
    for _ in range(iters):
        encoder.embed(x)
    _sync(encoder.device)
    return batch_size * iters / (time.perf_counter() - start)


class _Stamped:
    """The encoder's forward, noting when each batch reaches it (no sync: no slowdown)."""

    def __init__(self, forward: Any) -> None:
        self.forward = forward
        self.stamps: list[tuple[float, int]] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.stamps.append((time.perf_counter(), len(batch)))
        return self.forward(batch)


def pipeline(
    encoder: Any, paths: list[Path], *, batch_size: int, num_workers: Any
) -> tuple[float, float]:
    """images/s of a real `stage=extract` over JPEG files into a throwaway cache entry.

    Returns (steady, end to end): steady counts from the second batch on, so worker start-up
    (a one-off per split) does not decide a ratio measured on a few thousand images.
    """
    from probe.datasets.base import Split
    from probe.features.cache import CacheEntry
    from probe.features.extract import extract_split

    split = Split(items=[str(p) for p in paths], labels=np.zeros(len(paths)), load=_OpenRGB())
    stamped = _Stamped(encoder.forward)
    timed = dataclasses.replace(encoder, forward=stamped)
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp:
        entry = CacheEntry(Path(tmp) / "entry", {"bench": True})
        start = time.perf_counter()
        extract_split(encoder=timed, split=split, entry=entry, batch_size=batch_size,
                      num_workers=num_workers, desc="pipeline")  # fmt: skip
        end = time.perf_counter()
    batches = stamped.stamps[1:]  # the first call is the one-sample width probe
    if len(batches) < 3:
        return len(paths) / (end - start), len(paths) / (end - start)
    t0, rows = batches[1][0], sum(n for _, n in batches[1:])
    return rows / (end - t0), len(paths) / (end - start)


def main(argv: list[str]) -> int:
    from probe.core.device import resolve_device
    from probe.core.factory import make
    from probe.encoders.base import resolve_dtype
    from probe.features.batching import compile_encoder

    args, overrides = parse(argv)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    enc_cfg = _encoder_cfg(overrides)
    name = next((o.split("=", 1)[1] for o in overrides if o.startswith("encoder=")), None)
    shape = args.shape or (name if args.random_weights else None)
    if shape is not None and shape not in SHAPES:
        raise SystemExit(f"no known shape for {shape!r}; use --shape {{{','.join(SHAPES)}}}")
    if shape is None and enc_cfg is None:
        raise SystemExit(f"no encoder config for {overrides}; see configs/encoder/")
    if shape:
        encoder = random_encoder(shape, enc_cfg, device=device, dtype=dtype)
        size = SHAPES[shape][1]["image_size"]
    else:
        encoder = make(enc_cfg, device=device, dtype=dtype)
        size = int((enc_cfg.get("preprocess") or {}).get("crop") or 224)
    if args.compile:
        encoder = compile_encoder(encoder)
    on_gpu = str(device).startswith("cuda")
    batch = args.batch_size or (256 if on_gpu else 32)
    n = args.n_images or (4096 if on_gpu else 256)
    workers = args.num_workers
    if workers == "auto":
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        workers = max(0, min((int(cpus) if cpus else len(os.sched_getaffinity(0))) - 1, 32))
    folder = args.images or Path(tempfile.gettempdir()) / "probe-bench-jpegs"
    paths = make_jpegs(folder, n)
    ceil = ceiling(encoder, batch_size=batch, size=size, iters=args.iters)
    full, end_to_end = pipeline(encoder, paths, batch_size=batch, num_workers=int(workers))
    feature = ",".join(encoder.kinds) or None
    out = {"encoder": name, "shape": shape, "feature": feature, "token_pool": encoder.token_pool,
           "random_weights": bool(shape), "device": device,
           "gpu": torch.cuda.get_device_name() if on_gpu else None, "dtype": dtype,
           "batch_size": batch, "num_workers": int(workers), "images": n,
           "ceiling_images_per_s": round(ceil, 1), "pipeline_images_per_s": round(full, 1),
           "pipeline_end_to_end_images_per_s": round(end_to_end, 1),
           "ratio": round(full / ceil, 3)}  # fmt: skip
    print(f"encoder {name or '-'} (shape {shape or 'from config'}, feature {feature}, "
          f"{'random weights' if shape else 'real weights'}) on {out['gpu'] or device}, {dtype}, "
          f"batch {batch}, {workers} workers")  # fmt: skip
    print(f"forward-only ceiling : {ceil:9.1f} images/s (synthetic {size}x{size} on the device)")
    what = f"{n} JPEGs: decode+preprocess+forward+write, steady"
    print(f"full pipeline        : {full:9.1f} images/s ({what})")
    print(f"  end to end         : {end_to_end:9.1f} images/s (with worker start-up)")
    print(f"ratio                : {full / ceil:9.3f} (goal on a GPU: >= 0.90)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0
