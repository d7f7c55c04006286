"""A protocol card applied to a composed run config, before anything is built.

A card (`configs/protocol/NAME.yaml`, chosen with `protocol=NAME`) fixes what a paper's number
depends on. Its `encoder:` block (feature kind, resolution, evaluation transform), its
`probe:` block (the solver's stopping rule) and its `eval:` block (a trained head's settings:
lr, weight decay, epochs, batch size, search) replace those keys of the run's config here, so
the feature cache, the result's recorded config and every later composition of the same
overrides (`python -m probe.grid`, the tables' flags) see one and the same config. Its
`linear:` block (val rule, search, refit, metric) is built by the probe stage
(`probe.evaluations.cards`). A card's keys win over the encoder's and the command line's: to
vary one, write another card.

`protocol=clip` (the default) fixes nothing here: the run config is the one it always was.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from probe.core.errors import ProbeError

DEFAULT = "clip"


def card_name(cfg: Any) -> str:
    """The run's protocol card (`clip` when the config has no protocol group at all)."""
    node = cfg.get("protocol") if hasattr(cfg, "get") else None
    return str(node.get("name", DEFAULT)) if node else DEFAULT


def apply_card(cfg: DictConfig) -> DictConfig:
    """`cfg` with the card's encoder, probe and eval keys in place, after checking that the
    card can apply: its evaluations include the run's, and an image encoder has every key it
    fixes.

    Idempotent: a config the card was applied to comes back equal. On features the user brings
    (`encoder.user_features: true`, `encoder=precomputed`) the encoder block is not applied;
    the result says so (`protocol_applied`)."""
    card = cfg.get("protocol")
    if not card:
        return cfg
    name = card_name(cfg)
    evals = list(card.get("evals") or [])
    evaluation = str(cfg.eval.get("name", "linear"))
    if evals and evaluation not in evals:
        raise ProbeError(
            f"protocol={name} defines eval={'|'.join(evals)} only, not eval={evaluation}; "
            f"run eval={evaluation} under protocol={DEFAULT} (the default)"
        )
    fixed, solver, trainer = _block(card, "encoder"), _block(card, "probe"), _block(card, "eval")
    if not fixed and not solver and not trainer:
        return cfg
    out = cfg.copy()
    with open_dict(out):
        if fixed and not cfg.encoder.get("user_features", False):
            _check_encoder(name, cfg.encoder, fixed)
            for key, value in fixed.items():
                out.encoder[key] = value  # replaced whole (a transform is never half a card's)
        for key, value in solver.items():
            out.probe[key] = value
        for key, value in trainer.items():  # the trainer's settings (eval=sgd_linear's lr, ...)
            out.eval[key] = value
    return out


def card_fixing_feature(cfg: Any) -> str:
    """`protocol=NAME fixes encoder.feature=KIND; ` when the run's card chose the feature kind
    (a prefix for the encoder's own error), else nothing."""
    feature = _block(cfg.get("protocol") or {}, "encoder").get("feature")
    if not feature or cfg.encoder.get("user_features", False):
        return ""
    return f"protocol={card_name(cfg)} fixes encoder.feature={feature} (its paper's feature): "


def _block(card: Any, key: str) -> dict[str, Any]:
    node = card.get(key)
    return dict(OmegaConf.to_container(node, resolve=True)) if node else {}


def _check_encoder(name: str, encoder: Any, fixed: dict[str, Any]) -> None:
    missing = sorted((k for k in fixed if k not in encoder), key=_ORDER.index)
    if missing:
        key = missing[0]
        raise ProbeError(
            f"protocol={name} fixes encoder.{key}={fixed[key]!r}, but encoder="
            f"{encoder.get('name')} has no {key} setting (no {_WHAT.get(key, key)}); use an "
            "encoder with one, or bring your own features with encoder=precomputed"
        )


_ORDER = ["feature", "features", "preprocess", "resolution"]  # the likeliest miss first
_WHAT = {
    "feature": "feature kinds, so no class token",
    "preprocess": "evaluation transform",
    "resolution": "input resolution",
}
