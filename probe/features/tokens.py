"""What a run asking for the token cache must get right, checked before any work.

`encoder.feature=tokens` (or `tokens.lN`, or either in `encoder.features`) caches every token
of a block, N x T x D float16 (`probe/features/layout.py`). Refused in one line at the top of
`python -m probe`, before a dataset is listed or a model loaded:

- a token kind of an encoder family without tokens (pixels, precomputed rows; a CNN is
  refused when its model is built, which is the first the harness knows of it);
- `encoder.token_pool` without a token kind, or one that does not divide the patch grid the
  config's `resolution // patch_size` makes (configs without them: when the model is built);
- `probe.normalize=l2` on tokens (an attentive head normalises its tokens itself).

A probed token kind with an evaluation that takes pooled N x D features (eval=linear, knn,
fewshot), or eval=attentive on a pooled kind, is refused just before, by `run.check_eval_input`
(`eval.input`); `stage=extract` fills the token cache whatever `eval` says.
"""

from __future__ import annotations

from typing import Any

from probe.core.errors import ProbeError
from probe.encoders.base import has_tokens
from probe.encoders.tokens import check_pool, is_token_kind
from probe.features.cache import CacheEntry

TOKEN_EVAL = "attentive"  # the evaluation that reads the token cache (`eval.input: tokens`)


def token_kinds(encoder: Any) -> list[str]:
    """The token kinds an encoder config asks for: `feature`, and those in `features`."""
    kinds = [encoder.get("feature"), *(encoder.get("features") or [])]
    return list(dict.fromkeys(str(k) for k in kinds if is_token_kind(k)))


def config_grid(encoder: Any) -> int | None:
    """The patch grid's side from the config (`resolution // patch_size`), or None."""
    patch, res = encoder.get("patch_size"), encoder.get("resolution")
    return int(res) // int(patch) if patch and res else None


def check_request(cfg: Any) -> None:
    """The checks of the module docstring, on the composed config."""
    enc = cfg.encoder
    kinds, pool = token_kinds(enc), enc.get("token_pool")
    if pool is not None and not kinds:
        raise ProbeError(
            f"encoder.token_pool={pool} pools the token cache, but no token kind is asked for; "
            "set encoder.feature=tokens (or add tokens to encoder.features), or remove it"
        )
    if not kinds:
        return
    if not has_tokens(enc):
        raise ProbeError(
            f"encoder.feature={kinds[0]}: encoder={enc.get('name')} has no tokens (no model, "
            "one vector a sample); the token cache needs a ViT, e.g. encoder=dinov2_l14"
        )
    grid = config_grid(enc)
    if grid is not None:
        check_pool(pool, grid, model=f"encoder={enc.get('name')} at {enc.get('resolution')} px")
    if cfg.get("stage", "all") == "extract" or not is_token_kind(enc.get("feature")):
        return
    normalize = (cfg.get("probe") or {}).get("normalize") or "none"
    if normalize != "none":
        raise ProbeError(
            f"probe.normalize={normalize} normalises pooled feature rows; the token cache is "
            f"read as extracted (eval={TOKEN_EVAL} normalises its tokens itself): remove it"
        )


def prefix_tokens(entry: CacheEntry) -> int:
    """How many leading tokens of each cached row are prefix tokens (class, registers), from
    the entry's meta.json; 0 for an entry that is not a token cache."""
    tokens = (entry.meta() or {}).get("tokens")
    return int(tokens["prefix"]) if isinstance(tokens, dict) else 0
