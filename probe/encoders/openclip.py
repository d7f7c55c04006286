"""open_clip vision towers (DFN5B and other open_clip checkpoints); an optional extra.

The protocol's feature (`pooler_output`) is the tower's pooled output with the projection
removed: for a CLS-pooled ViT, `ln_post` of the CLS token, i.e. the same point as CLIP's
`pooler_output`. Only the vision tower is kept. A hub id is fetched at `encoder.revision`
into the Hugging Face cache and opened as an open_clip `local-dir:` checkpoint, so a paper
run can pin a commit (open_clip's own `hf-hub:` loader always takes the newest one).

The token kinds read the transformer's output tokens after `ln_post`, the final norm, applied to
every token; `last4` applies it to the last four blocks' tokens. That is where open_clip 3.3.0
puts it (`open_clip/transformer.py` `VisionTransformer._pool`, lines 800-823): over every token
before pooling by default (line 820), after pooling with `final_ln_after_pool` (line 818, the
CLIPA towers); in both cases the token kinds take `ln_post` of every token, as open_clip's own
`forward_intermediates(normalize_intermediates=True)` does for the blocks (lines 860-862). A
tower with an attention pooler (`attn_pool`, lines 801-815; CoCa) gives `pooler_output` only:
there `ln_post` has the pooler's output width and follows the pooler (lines 813-814). The
layer kinds (`cls.l-2`, ...) take `ln_post` of the blocks they name. `projected` is the pooled
output times the tower's projection `proj`, what `encode_image` gives.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from probe.core.errors import ProbeError
from probe.encoders import kinds as K
from probe.encoders.base import Encoder
from probe.encoders.hub import commit_for
from probe.encoders.preprocess import build_transform

log = logging.getLogger(__name__)

INSTALL = 'pip install -e ".[openclip]"'
CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as err:
        raise ProbeError(
            f"this encoder needs open_clip, which is not installed ({err}); install the extra "
            f'with `{INSTALL}` (or `pip install "open_clip_torch>=3.0"`)'
        ) from err
    return open_clip


def local_checkpoint(model: str, revision: str) -> Path:
    """A directory holding `open_clip_config.json` and the weights, local or from the hub."""
    path = _local(model)
    if path is not None and path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ProbeError(f"encoder.model={model!r}: no {CONFIG_FILE} in that directory")
        return path
    if path is not None:
        raise ProbeError(f"encoder.model={model!r}: no such directory; give an existing path")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo = model.removeprefix("hf-hub:")
    try:
        folder = Path(hf_hub_download(repo, CONFIG_FILE, revision=revision)).parent
        for name in WEIGHT_FILES:
            try:
                hf_hub_download(repo, name, revision=revision)
                return folder
            except EntryNotFoundError:
                continue
    except Exception as err:  # noqa: BLE001 - any hub failure gets the same fix
        raise ProbeError(
            f"encoder.model={model!r} (encoder.revision={revision!r}) could not be fetched: {err}. "
            "Give an open_clip hub id (with network or a warm HF cache) or a local directory "
            f"with {CONFIG_FILE} and weights"
        ) from err
    raise ProbeError(f"encoder.model={model!r} has none of {WEIGHT_FILES} at {revision!r}")


def _local(model: str) -> Path | None:
    """The directory `model` names when it is a path (or an existing folder), else None."""
    path = Path(model.removeprefix("hf-hub:").removeprefix("local-dir:")).expanduser()
    return path if path.is_dir() or model.startswith(("local-dir:", "/", ".", "~")) else None


def weights_commit(model: str, revision: str) -> str | None:
    """The hub commit `revision` names (None for a local directory: its files are stamped).
    A missing open_clip is reported first: it is the fix the user needs before any download."""
    import_open_clip()
    if _local(model) is not None:
        return None
    return commit_for(model.removeprefix("hf-hub:"), revision, anchor=CONFIG_FILE)


def preprocess_from_open_clip(visual: Any) -> dict[str, Any]:
    """open_clip's evaluation transform as our `preprocess` block."""
    cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
    size = cfg.get("size", visual.image_size)
    size = size[0] if isinstance(size, (list, tuple)) and size[0] == size[1] else size
    mode = cfg.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise ProbeError(
            f"open_clip resize_mode={mode!r} is not supported; set encoder.preprocess explicitly"
        )
    return {
        "size": size,
        "crop": size if mode == "shortest" else None,
        "mode": mode,
        "interpolation": cfg.get("interpolation", "bicubic"),
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
    }


class OpenCLIPForward:
    """Batch -> features by kind from one pass of an open_clip ViT (projection removed); the
    token kinds after `ln_post`, the pooled output as the tower's own `_pool` makes it, and
    `projected` as the tower's `forward` makes it with its projection (`pooled @ proj`, open_clip
    3.3.0 `transformer.py` lines 907-913): `CLIP.encode_image(normalize=False)` (`model.py`
    lines 326-328). The blocks `kinds.blocks_needed` names come from the transformer's own
    `forward_intermediates` (lines 403-432), normed with `ln_post`."""

    def __init__(
        self, visual: torch.nn.Module, kinds: tuple[str, ...], *, proj: torch.Tensor | None = None
    ) -> None:
        self.visual = visual
        self.kinds = kinds
        self.proj = proj
        self.depth = len(getattr(getattr(visual, "transformer", None), "resblocks", ()))
        self.take = K.blocks_needed(kinds, self.depth)

    def __call__(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        if self.kinds == ("pooler_output",):
            return self.visual(images)
        visual = self.visual
        x = visual._embeds(images)
        blocks: dict[int, torch.Tensor] = {}
        if self.take:  # returned in block order, which `take` is sorted in
            x, inter = visual.transformer.forward_intermediates(x, indices=self.take)
            blocks = {i: visual.ln_post(b) for i, b in zip(self.take, inter, strict=True)}
        else:
            x = visual.transformer(x)
        pooled = visual._pool(x)[0] if {"pooler_output", K.PROJECTED} & set(self.kinds) else None
        projected = pooled @ self.proj if K.PROJECTED in self.kinds else None
        final = visual.ln_post(x) if K.NEED_FINAL & set(self.kinds) else None
        tokens = K.Tokens(pooled=pooled, final=final, prefix=1, blocks=blocks, depth=self.depth,
                          projected=projected)  # fmt: skip
        feats = K.select(self.kinds, tokens)
        return feats[self.kinds[0]] if len(self.kinds) == 1 else feats


def load_visual(model: str, *, revision: str, device: str) -> torch.nn.Module:
    """The vision tower with its projection removed (the protocol's feature is before it);
    the projection, if the tower had one, is kept as `visual.probe_proj` for `projected`."""
    open_clip = import_open_clip()
    folder = local_checkpoint(model, revision)
    try:
        clip = open_clip.create_model(f"local-dir:{folder}", precision="fp32", device=device)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        raise ProbeError(f"encoder.model={model!r}: open_clip could not load it: {err}") from err
    visual = clip.visual.eval().requires_grad_(False)
    proj = getattr(visual, "proj", None)
    visual.probe_proj = proj if isinstance(proj, torch.Tensor) else None
    visual.proj = None
    visual.output_tokens = False
    return visual


def build(
    *,
    model: str,
    revision: str = "main",
    feature: str = "pooler_output",
    features: list[str] | None = None,
    preprocess: dict | None = None,
    model_type: str | None = None,
    resolution: int | None = None,
    width: int | None = None,
    token_pool: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    **_: Any,
) -> Encoder:
    kinds = K.requested(feature, features)
    visual = load_visual(model, revision=revision, device=device)
    kind = type(visual).__name__
    if model_type and kind != model_type:
        raise ProbeError(
            f"encoder.model={model!r} has an open_clip {kind!r} vision tower, but this config "
            f"expects encoder.model_type={model_type!r}; check encoder.model"
        )
    tokens = hasattr(visual, "_embeds") and hasattr(visual, "transformer")
    tokens = tokens and getattr(visual, "attn_pool", None) is None  # ln_post follows the pooler
    depth = len(getattr(visual.transformer, "resblocks", ())) if tokens else 0
    projected = visual.probe_proj is not None and hasattr(visual, "_pool")
    described = f"{model!r} (an open_clip {kind})"
    K.check_available(kinds, K.available(has_tokens=tokens, has_cls=tokens, depth=depth,
                                         projected=projected), model=described)  # fmt: skip
    K.check_layers(kinds, depth, model=described)
    found = getattr(getattr(visual, "ln_post", None), "normalized_shape", [None])[0]
    K.check_width(width, found, model=model)
    native = visual.image_size
    native = native[0] if isinstance(native, (list, tuple)) else native
    if resolution is not None and int(resolution) != int(native):
        raise ProbeError(
            f"encoder.resolution={resolution} but {model!r} takes {native} px images; "
            f"set encoder.resolution={native}"
        )
    if preprocess is None:
        preprocess = preprocess_from_open_clip(visual)
    return Encoder(
        transform=build_transform(**dict(preprocess)),
        forward=OpenCLIPForward(visual, kinds, proj=visual.probe_proj),
        device=device,
        dtype=dtype,
        feature_dim=found,
        kinds=kinds,
        prefix_tokens=1,
        token_pool=token_pool,
    )
