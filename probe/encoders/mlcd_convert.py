"""Convert DeepGlint's original MLCD RoPE2D checkpoint into a Hugging Face `MLCDVisionModel`.

The command line is `python -m probe.convert` (the same three flags as DeepGlint's
`convert_vit_bigG_14_rope2d_to_hf.py`).
The architecture is read off the tensor shapes (docs/protocol.md section 5), so any size converts.
The result is written to a temporary sibling directory, reloaded with transformers and checked
(no missing or unexpected keys, every tensor bit-identical, a finite forward pass) before it is
moved into place: a directory at the destination is always a verified one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from probe.core.errors import ProbeError

log = logging.getLogger(__name__)

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
ROPE_THETA = 10000.0
DROPPED = ("positional_embedding", "proj")
TOP_LEVEL = {
    "conv1.weight": "embeddings.patch_embedding.weight",
    "class_embedding": "embeddings.class_embedding",
    "class_pos_emb": "class_pos_emb",
    "ln_pre.weight": "pre_layrnorm.weight",
    "ln_pre.bias": "pre_layrnorm.bias",
    "ln_post.weight": "post_layernorm.weight",
    "ln_post.bias": "post_layernorm.bias",
}
BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
BLOCK_KEYS = [f"{p}.{s}" for p in (*BLOCK, "attn.in_proj") for s in ("weight", "bias")]
_BLOCK_RE = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")


class ConversionError(ProbeError):
    """The checkpoint could not be converted, or the written model failed its verification."""


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The original state dict, `_orig_mod.` prefix stripped, unused entries dropped."""
    if not path.is_file():
        raise ConversionError(
            f"--checkpoint_path {path} does not exist; give the path of DeepGlint's .pt file "
            "(e.g. MLCD_ViT_bigG_14_336px_pytorch.pt)"
        )
    try:
        raw = _torch_load(path)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ConversionError(
            f"--checkpoint_path {path} is not a PyTorch checkpoint torch.load can read with "
            f"weights_only=True ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from err
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ConversionError(
            f"--checkpoint_path {path} holds a {type(raw).__name__}, not a state dict of tensors "
            "(the original MLCD checkpoint format, docs/protocol.md section 5)"
        )
    state = {k.removeprefix("_orig_mod."): v for k, v in raw.items()}
    return {k: v for k, v in state.items() if k not in DROPPED}


def _torch_load(path: Path):
    try:  # memory-map large checkpoints (bigG is ~7 GB) where the file format allows it
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        return torch.load(path, map_location="cpu", weights_only=True)


def infer_config(state: dict[str, torch.Tensor], *, image_size: int) -> dict:
    """Width, depth, heads, MLP width and patch size, from the tensor shapes alone."""
    _check_keys(state)
    width, _, patch, _ = state["conv1.weight"].shape
    rope_half = state["class_pos_emb"].shape[-1]
    heads, rem = divmod(width, 2 * rope_half)
    if rem or heads == 0:
        raise ConversionError(
            f"class_pos_emb width {rope_half} does not divide the model width {width} as "
            "width / (2 x class_pos_emb width); this is not an MLCD RoPE2D checkpoint"
        )
    if image_size % patch:
        raise ConversionError(
            f"--image_size {image_size} is not a multiple of the patch size {patch}; "
            "use the resolution the checkpoint was trained at (224, 336 or 448)"
        )
    return {
        "hidden_size": int(width),
        "intermediate_size": int(state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        "num_hidden_layers": _depth(state),
        "num_attention_heads": int(heads),
        "patch_size": int(patch),
        "image_size": int(image_size),
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "rope_parameters": {"rope_theta": ROPE_THETA, "rope_type": "axial"},
    }


def _depth(state: dict[str, torch.Tensor]) -> int:
    return 1 + max(int(m.group(1)) for k in state if (m := _BLOCK_RE.match(k)))


def _check_keys(state: dict[str, torch.Tensor]) -> None:
    if not any(_BLOCK_RE.match(k) for k in state):
        missing = sorted(set(TOP_LEVEL) - set(state)) + ["transformer.resblocks.0.*"]
    else:
        depth = _depth(state)
        blocks = [f"transformer.resblocks.{i}.{k}" for i in range(depth) for k in BLOCK_KEYS]
        missing = [k for k in [*TOP_LEVEL, *blocks] if k not in state]
    if missing:
        more = f" (+{len(missing) - 12} more)" if len(missing) > 12 else ""
        shown = ", ".join(missing[:12]) + more
        raise ConversionError(
            f"the checkpoint lacks {len(missing)} required key(s): {shown}. It is not a complete "
            "MLCD RoPE2D state dict (docs/protocol.md section 5)"
        )
    unknown = sorted(k for k in state if k not in TOP_LEVEL and not _BLOCK_RE.match(k))
    if unknown:
        raise ConversionError(
            f"the checkpoint has keys the MLCD format does not define: {', '.join(unknown[:12])}"
        )


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original keys -> `MLCDVisionModel` keys; the fused q,k,v projection is split."""
    out = {new: state[old] for old, new in TOP_LEVEL.items()}
    for key, value in state.items():
        match = _BLOCK_RE.match(key)
        if not match:
            continue
        i, rest = match.groups()
        prefix = f"encoder.layers.{i}."
        if rest.startswith("attn.in_proj."):
            q, k, v = value.chunk(3, dim=0)
            suffix = rest.rsplit(".", 1)[1]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), (q, k, v), strict=True):
                out[f"{prefix}self_attn.{name}.{suffix}"] = part.clone()
            continue
        module, suffix = rest.rsplit(".", 1)
        if module not in BLOCK:
            raise ConversionError(f"unknown block key {key!r} in the checkpoint")
        out[f"{prefix}{BLOCK[module]}.{suffix}"] = value
    return out


def write_model(hf_state: dict[str, torch.Tensor], config: dict, out_dir: Path) -> None:
    """Config, weights (safetensors) and the OpenAI-transform image processor.

    The weights are written directly: building a bigG model just to save it would cost a
    random initialisation of 1.8 B parameters.
    """
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, MLCDVisionConfig

    cfg = MLCDVisionConfig(**config)
    cfg.architectures = ["MLCDVisionModel"]
    cfg.dtype = hf_state["embeddings.patch_embedding.weight"].dtype
    cfg.save_pretrained(out_dir)
    save_file(
        {k: v.contiguous() for k, v in hf_state.items()},
        str(out_dir / "model.safetensors"),
        metadata={"format": "pt"},
    )
    size = config["image_size"]
    CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        resample=3,  # PIL bicubic
        do_center_crop=True,
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
    ).save_pretrained(out_dir)


def verify(out_dir: Path, hf_state: dict[str, torch.Tensor]) -> dict:
    """Reload with transformers and check keys, every tensor and a forward pass."""
    from transformers import AutoModel, MLCDVisionModel

    model, info = AutoModel.from_pretrained(out_dir, output_loading_info=True, dtype="auto")
    if not isinstance(model, MLCDVisionModel):
        raise ConversionError(
            f"the written model reloads as {type(model).__name__}, not MLCDVisionModel"
        )
    problems = {k: sorted(v) for k, v in info.items() if v and k != "error_msgs"}
    if problems or info.get("error_msgs"):
        raise ConversionError(
            f"reloading the written model reported {problems or info['error_msgs']}"
        )
    reloaded = model.state_dict()
    bad = [k for k, v in hf_state.items() if k not in reloaded or not _identical(reloaded[k], v)]
    if bad:
        raise ConversionError(
            f"{len(bad)} tensor(s) differ after reloading the written model: {bad[:8]}"
        )
    size = model.config.image_size
    # one image at the model's resolution: bigG at 448 px is ~4 TFLOPs, so use a GPU if any
    device = "cuda" if torch.cuda.is_available() else "cpu"
    probe = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = model.float().eval().to(device)(pixel_values=probe.to(device))
    n_tokens = (size // model.config.patch_size) ** 2 + 1
    if out.last_hidden_state.shape != (1, n_tokens, model.config.hidden_size):
        raise ConversionError(f"unexpected output shape {tuple(out.last_hidden_state.shape)}")
    finite = torch.isfinite(out.pooler_output).all() and torch.isfinite(out.last_hidden_state).all()
    if not finite:
        nonfinite = [k for k, v in hf_state.items() if not torch.isfinite(v).all()]
        raise ConversionError(
            "the converted model gives non-finite outputs on a probe input"
            + (f"; non-finite weights: {nonfinite[:8]}" if nonfinite else "")
        )
    return {"tensors": len(hf_state), "pooler_norm": float(out.pooler_output.norm(dim=-1).mean())}


def _identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN payloads included, so a NaN weight is caught later, by name)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    bits = (
        a.detach().cpu().reshape(-1).view(torch.uint8),
        b.detach().cpu().reshape(-1).view(torch.uint8),
    )
    return torch.equal(*bits)


def convert(checkpoint_path: Path, out_dir: Path, *, image_size: int, overwrite: bool = False):
    """Convert, write to a temporary sibling, verify, then move into `out_dir`."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConversionError(
            f"--pytorch_dump_folder_path {out_dir} exists and is not empty; remove it or pass "
            "--overwrite"
        )
    state = load_state_dict(Path(checkpoint_path).expanduser())
    config = infer_config(state, image_size=image_size)
    log.info("architecture: %s", {k: v for k, v in config.items() if k != "rope_parameters"})
    hf_state = convert_state_dict(state)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_model(hf_state, config, tmp)
        try:
            report = verify(tmp, hf_state)
        except ConversionError as err:
            msg = f"verification failed: {err}. Nothing was written to {out_dir}"
            raise ConversionError(msg) from err
        _default_permissions(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**report, **config}


def _default_permissions(folder: Path) -> None:
    """mkdtemp (and safetensors) create owner-only files; give them the umask's defaults."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)
