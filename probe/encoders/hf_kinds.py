"""Which kinds a transformers vision model gives, and the one pass that computes them.

The token kinds read `last_hidden_state` after the model's final norm (`probe/encoders/kinds.py`);
`last4` and the layer kinds (`cls.l-2`, ...) read the outputs of the blocks they name through
forward hooks (the tensors `output_hidden_states=True` would hold at `hidden_states[N + 1]`,
without keeping every layer's) and apply the same final norm, as dinov2's
`get_intermediate_layers(norm=True)` does.

`projected` is the image embedding after the projection head, what zero-shot classification and
CLIP_benchmark use (read in transformers 5.24.0):
- CLIP: `CLIPModel.get_image_features` is `visual_projection(vision_model(...).pooler_output)`
  (models/clip/modeling_clip.py lines 734-741). The projection lives in the two-tower
  checkpoint, so `projected` loads the tower through `CLIPVisionModelWithProjection`, the class
  transformers ships for it (lines 889-942: `vision_model` plus `visual_projection`), from the
  same checkpoint: the text tower is still never loaded. Its config takes `projection_dim`
  from the checkpoint's top-level config, which `CLIPModel` builds the projection with (line
  664); the vision config's own `projection_dim` defaults to 512 whatever the checkpoint holds.
- SigLIP: no projection separate from the tower; `SiglipModel.get_image_features` returns the
  vision model's output (models/siglip/modeling_siglip.py lines 729-733) and `forward` takes
  its `pooler_output`, the attention-pool head, as the image embedding (line 793). So
  `projected` is `pooler_output` there.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from probe.core.errors import ProbeError
from probe.encoders import kinds as K

# Model types whose checkpoint holds a projection head, and the class that loads it with the
# vision tower alone; a `clip_vision_model` checkpoint saved by that class has one too.
PROJECTION_TOWERS = {"clip": "CLIPVisionModelWithProjection"}
PROJECTION_ARCHITECTURES = ("CLIPVisionModelWithProjection",)
# Model types whose image embedding is the tower's own `pooler_output` (no separate projection).
POOLED_EMBEDDING = ("siglip", "siglip_vision_model")
FINAL_NORMS = ("layernorm", "post_layernorm")
BLOCK_LISTS = ("encoder.layers", "encoder.layer")


def projection_class(config: Any) -> str | None:
    """The transformers class that loads the vision tower with its projection, or None."""
    if config.model_type in PROJECTION_TOWERS:
        return PROJECTION_TOWERS[config.model_type]
    archs = getattr(config, "architectures", None) or ()
    return next((a for a in archs if a in PROJECTION_ARCHITECTURES), None)


def has_projection(config: Any) -> bool:
    return config.model_type in POOLED_EMBEDDING or projection_class(config) is not None


def projection_kwargs(config: Any) -> tuple[str, dict[str, Any]] | None:
    """(class name, extra `from_pretrained` kwargs) that load the tower with its projection;
    None where the image embedding is the tower's own output (SigLIP)."""
    name = projection_class(config)
    if name is None:
        return None
    return name, {"projection_dim": int(config.projection_dim)}


def split_projection(net: torch.nn.Module, config: Any) -> tuple[torch.nn.Module, Any]:
    """(the vision tower, the projection head) of a loaded model: `visual_projection` of a
    `...WithProjection` model, the identity for SigLIP (`pooler_output` is its embedding),
    None for a model without one."""
    head = getattr(net, "visual_projection", None)
    if head is not None:
        return net.vision_model, head
    if config.model_type in POOLED_EMBEDDING:
        return net, torch.nn.Identity()
    return net, None


def final_norm_and_blocks(net: torch.nn.Module) -> tuple[Any, Any]:
    """The final norm and the list of transformer blocks, where the model has them."""
    norm = blocks = None
    for tower in (net, getattr(net, "vision_model", None)):
        for name in FINAL_NORMS:
            found = getattr(tower, name, None)
            if norm is None and isinstance(found, torch.nn.Module):
                norm = found
        for path in BLOCK_LISTS:
            found = tower
            for name in path.split("."):
                found = getattr(found, name, None)
            if blocks is None and isinstance(found, torch.nn.ModuleList):
                blocks = found
    return norm, blocks


class HFForward:
    """Batch -> features by kind from one call of a transformers vision model.

    `norm_tokens` (CLIP, MLCD): the final norm is applied here to every token of
    `last_hidden_state`, else the model has applied it. The blocks `kinds.blocks_needed` names
    are kept by forward hooks and normed with `final_norm`; `projection` maps `pooler_output`
    to `projected`.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        kinds: str | tuple[str, ...],
        *,
        prefix: int = 1,
        final_norm: Any = None,
        blocks: Any = None,
        norm_tokens: bool = False,
        projection: Any = None,
    ) -> None:
        self.net = net
        self.kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        self.prefix = prefix
        self.final_norm = final_norm
        self.projection = projection
        self.norm_tokens = norm_tokens and bool(K.NEED_FINAL & set(self.kinds))
        self.depth = len(blocks) if blocks is not None else 0
        self._kept: dict[int, torch.Tensor] = {}
        for index in K.blocks_needed(self.kinds, self.depth):
            blocks[index].register_forward_hook(partial(self._keep, index))

    def _keep(self, index: int, _module: Any, _args: Any, output: Any) -> None:
        self._kept[index] = output[0] if isinstance(output, tuple) else output

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        self._kept.clear()
        out = self.net(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None and {"pooler_output", K.PROJECTED} & set(self.kinds):
            raise ProbeError("this model has no pooler_output; set encoder.feature=cls or mean")
        blocks = {i: self.final_norm(b) for i, b in self._kept.items()}
        self._kept.clear()
        final = out.last_hidden_state
        final = self.final_norm(final) if self.norm_tokens else final
        projected = self.projection(pooled) if K.PROJECTED in self.kinds else None
        tokens = K.Tokens(pooled=pooled, final=final, prefix=self.prefix, blocks=blocks,
                          depth=self.depth, projected=projected)  # fmt: skip
        feats = K.select(self.kinds, tokens)
        return feats[self.kinds[0]] if len(self.kinds) == 1 else feats
