"""Encoder families. Each config in `configs/encoder/` names one family's `build` via `_target_`.

A family's `build(**cfg, device=..., dtype=...)` returns an `Encoder`: a per-image
`transform` (run in DataLoader workers) and a batched `embed` (run on the device). Families:
`hf` (transformers), `openclip`, `timm` (both optional extras), `pixels`, `precomputed`.
`kinds` defines the feature kinds (pooler_output, cls, mean, cls+mean, last4) every ViT-like
family computes, several from one forward pass. Also owns the preprocessing built from a
config's `preprocess` block and the MLCD checkpoint converter. May import `core` only.
"""

from probe.encoders.base import Encoder

__all__ = ["Encoder"]
