"""Feature kinds of the hf and open_clip families against the libraries' own outputs, and
several kinds from one pass: one backbone pass, one cache entry per kind, one result per kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg
from omegaconf import OmegaConf
from reference import openai_reference, sample_photos
from tiny import open_clip_kinds

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.encoders.kinds import KINDS
from probe.run import build_dataset, run

TOL = 1e-5
RES = 32


def pixels() -> torch.Tensor:
    return torch.tensor(np.stack([openai_reference(p, RES) for p in sample_photos()])).float()


def build(model: Path, *extra: str):
    cfg = compose_cfg(["encoder=hf", f"encoder.model={model}", "encoder.preprocess={size: 32}",
                       *extra])  # fmt: skip
    return make(cfg.encoder, device="cpu", dtype="float32")


def hf_reference(model_type: str, path: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every kind from transformers' own outputs (`output_hidden_states`, not our hooks): the
    token kinds after the final norm, which CLIP and MLCD apply to the pooled CLS only."""
    import transformers as tf

    cls = {
        "clip_vision_model": tf.CLIPVisionModel,
        "mlcd_vision_model": tf.MLCDVisionModel,
        "dinov2": tf.Dinov2Model,
        "dinov2_with_registers": tf.Dinov2WithRegistersModel,
        "siglip_vision_model": tf.SiglipVisionModel,
    }[model_type]
    net = cls.from_pretrained(path).eval()
    norm = net.layernorm if model_type.startswith("dinov2") else net.post_layernorm
    # the patch tokens follow the class token and any registers (transformers'
    # Dinov2WithRegistersForImageClassification: sequence_output[:, 1 + num_register_tokens:])
    registers = getattr(net.config, "num_register_tokens", 0)
    with torch.no_grad():
        out = net(pixel_values=x, output_hidden_states=True)
        hidden = out.last_hidden_state
        prefix = 0 if model_type == "siglip_vision_model" else 1 + registers
        if model_type in ("clip_vision_model", "mlcd_vision_model"):
            hidden = norm(hidden)
        mean = hidden[:, prefix:].mean(1)
        want = {"pooler_output": out.pooler_output, "mean": mean}
        if prefix:
            blocks = [norm(h) for h in out.hidden_states[-4:]]
            want |= {"cls": hidden[:, 0], "cls+mean": torch.cat([hidden[:, 0], mean], 1),
                     "last4": torch.cat([*(b[:, 0] for b in blocks),
                                         blocks[-1][:, prefix:].mean(1)], 1)}  # fmt: skip
    return want


@pytest.mark.parametrize(
    "model_type",
    ["clip_vision_model", "mlcd_vision_model", "dinov2", "dinov2_with_registers",
     "siglip_vision_model"],
)  # fmt: skip
def test_hf_kinds_equal_transformers_outputs(model_type: str, tiny) -> None:
    x = pixels()
    want = hf_reference(model_type, tiny[model_type], x)
    kinds = [k for k in KINDS if k in want]
    together = build(tiny[model_type], f"encoder.features=[{','.join(kinds)}]")
    got = together.embed_kinds(x)
    assert list(got) == kinds
    for kind in kinds:
        assert (got[kind] - want[kind]).abs().max().item() <= TOL, kind
        alone = build(tiny[model_type], f"encoder.feature={kind}").embed(x)
        assert torch.equal(alone, got[kind]), f"{kind}: one pass differs from its own pass"
    widths = {"pooler_output": 32, "cls": 32, "mean": 32, "cls+mean": 64, "last4": 160}
    assert {k: v.shape[1] for k, v in got.items()} == {k: widths[k] for k in kinds}
    assert together.embed(x).shape == (len(x), sum(widths[k] for k in kinds))


def test_dinov2_last4_is_dinov2s_linear_input(tiny) -> None:
    """dinov2/eval/linear.py `create_linear_input(x, 4, True)` on `get_intermediate_layers(x, 4,
    return_class_token=True, norm=True)` (dinov2/models/vision_transformer.py), transcribed
    onto the transformers model's own blocks, and dinov2's pooler_output is its normed CLS."""
    import transformers as tf

    net = tf.Dinov2Model.from_pretrained(tiny["dinov2"]).eval()
    x = pixels()
    with torch.no_grad():
        tokens, outputs = net.embeddings(x), []
        blocks = net.encoder.layer
        for i, blk in enumerate(blocks):
            tokens = blk(tokens)
            if i in range(len(blocks) - 4, len(blocks)):
                outputs.append(tokens)
        outputs = [net.layernorm(out) for out in outputs]
        x_tokens_list = list(
            zip([o[:, 1:] for o in outputs], [o[:, 0] for o in outputs], strict=True)
        )
        linear_input = torch.cat([c for _, c in x_tokens_list[-4:]], dim=-1)
        linear_input = torch.cat((linear_input, x_tokens_list[-1][0].mean(dim=1)), dim=-1)
    got = build(tiny["dinov2"], "encoder.features=[last4,pooler_output,cls]").embed_kinds(x)
    assert (got["last4"] - linear_input).abs().max().item() <= TOL
    assert torch.equal(got["pooler_output"], got["cls"])


def test_dinov2_register_tokens_are_not_patches(tiny) -> None:
    """A DINOv2 with registers (a tiny random `Dinov2WithRegistersModel` saved to disk): `cls`
    is dinov2's `x_norm_clstoken`, `mean` averages its `x_norm_patchtokens` only, and `last4`
    averages `get_intermediate_layers`' patch tokens, all of which start after the registers
    (facebookresearch/dinov2 b8931f7, dinov2/models/vision_transformer.py lines 264-268 and
    313-314: `x_norm[:, num_register_tokens + 1:]`, `out[:, 1 + num_register_tokens:]`)."""
    import transformers as tf

    path = tiny["dinov2_with_registers"]
    net = tf.Dinov2WithRegistersModel.from_pretrained(path).eval()
    reg = net.config.num_register_tokens
    assert reg == 4
    x = pixels()
    with torch.no_grad():
        tokens, outputs = net.embeddings(x), []
        for blk in net.encoder.layer:
            tokens = blk(tokens)
            outputs.append(tokens)
        x_norm = net.layernorm(tokens)
        normed = [net.layernorm(out) for out in outputs[-4:]]
    patches = x_norm[:, reg + 1 :]
    last4 = torch.cat([*(o[:, 0] for o in normed), normed[-1][:, 1 + reg :].mean(1)], dim=-1)
    got = build(path, "encoder.features=[pooler_output,cls,mean,last4]").embed_kinds(x)
    assert (got["cls"] - x_norm[:, 0]).abs().max().item() <= TOL
    assert torch.equal(got["pooler_output"], got["cls"])
    assert (got["mean"] - patches.mean(1)).abs().max().item() <= TOL
    assert (got["last4"] - last4).abs().max().item() <= TOL
    with_registers = x_norm[:, 1:].mean(1)  # what a mean that took the registers would give
    assert (got["mean"] - with_registers).abs().max().item() > 1e-3


def test_open_clip_kinds_equal_forward_intermediates(tiny) -> None:
    path = tiny["VisionTransformer"]
    x, want = open_clip_kinds(path, RES)
    cfg = compose_cfg(["encoder=dfn5b_h14", f"encoder.model={path}", f"encoder.resolution={RES}",
                       "encoder.width=32", f"encoder.features=[{','.join(want)}]"])  # fmt: skip
    got = make(cfg.encoder, device="cpu", dtype="float32").embed_kinds(x)
    for kind, value in want.items():
        assert (got[kind] - value).abs().max().item() <= TOL, kind


def test_unavailable_kind_names_the_kinds_the_model_gives(tiny) -> None:
    with pytest.raises(ProbeError, match=r"last4 is not available.*can give: pooler_output, "
                       r"projected, mean, tokens, mean\.lN, tokens\.lN$"):  # fmt: skip
        build(tiny["siglip_vision_model"], "encoder.features=[pooler_output,last4]")
    with pytest.raises(ProbeError, match=r"encoder.features=\['cls', 'gap'\]: 'gap' unknown"):
        build(tiny["clip_vision_model"], "encoder.features=[cls,gap]")


def test_width_is_checked_at_load(tiny) -> None:
    with pytest.raises(ProbeError, match=r"has width 32, but .* encoder.width=1024"):
        build(tiny["dinov2"], "encoder.width=1024")
    with pytest.raises(ProbeError, match=r"has width 32, but .* encoder.width=1280"):
        make(compose_cfg(["encoder=dfn5b_h14", f"encoder.model={tiny['VisionTransformer']}",
                          f"encoder.resolution={RES}"]).encoder)  # fmt: skip


class CountCalls:
    """Counts forward calls of modules of one class (the backbone), via a global hook."""

    def __init__(self, cls_name: str) -> None:
        self.cls_name, self.calls = cls_name, 0

    def __enter__(self) -> CountCalls:
        self.handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def _hook(self, module, _args, _out) -> None:
        self.calls += type(module).__name__ == self.cls_name

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def entries(cache: Path) -> dict[str, Path]:
    """`split/kind` -> finished entry directory."""
    out = {}
    for meta in cache.rglob("meta.json"):
        fp = json.loads(meta.read_text())["fingerprint"]
        out[f"{fp['split']}/{fp['encoder']['feature']}"] = meta.parent
    return out


def test_two_kinds_one_pass_two_entries_then_one_result_per_kind(tiny, tmp_path: Path) -> None:
    base = ["encoder=hf", f"encoder.model={tiny['clip_vision_model']}", "probe.tol=1e-3",
            f"results_dir={tmp_path / 'results'}", f"data_root={tmp_path / 'data'}"]  # fmt: skip
    cfg = compose_cfg([*base, f"cache_dir={tmp_path / 'alone'}", "stage=extract"])
    batches = sum(-(-len(s) // cfg.batch_size) + 1 for s in build_dataset(cfg).splits.values())
    with CountCalls("CLIPVisionModel") as alone:
        run(cfg)
    both = [*base, f"cache_dir={tmp_path / 'c'}", "encoder.features=[pooler_output,last4]"]
    with CountCalls("CLIPVisionModel") as together:
        run(compose_cfg([*both, "stage=extract"]))
    assert alone.calls == together.calls == batches  # one probe sample + the batches, per split
    got, single = entries(tmp_path / "c"), entries(tmp_path / "alone")
    assert sorted(got) == ["test/last4", "test/pooler_output", "train/last4", "train/pooler_output"]
    for key, path in single.items():  # the same entry, whether extracted alone or together
        assert path.relative_to(tmp_path / "alone") == got[key].relative_to(tmp_path / "c")
        assert (path / "features.npy").read_bytes() == (got[key] / "features.npy").read_bytes()
    assert np.load(got["train/last4"] / "features.npy").shape == (1347, 160)
    # each kind is probed by its own run, from the entries the one pass filled
    cache = f"cache_dir={tmp_path / 'c'}"
    pooled = run(compose_cfg([*base, cache, "stage=probe"]))
    last4 = run(compose_cfg([*base, cache, "stage=probe", "encoder.feature=last4"]))
    assert (
        pooled["path"].endswith("results/hf/digits.json") and pooled["feature"] == "pooler_output"
    )
    assert last4["path"].endswith("results/hf@last4/digits.json") and last4["encoder"] == "hf@last4"
    assert (last4["feature"], last4["feature_dim"], last4["normalize"]) == ("last4", 160, "none")
    assert Path(last4["features"]["train"]) == got["train/last4"]


def test_probed_kind_must_be_among_the_extracted(tiny, dirs) -> None:
    args = [*dirs, "encoder=hf", f"encoder.model={tiny['clip_vision_model']}",
            "encoder.features=[cls,last4]"]  # fmt: skip
    with pytest.raises(ProbeError, match=r"encoder.feature=pooler_output is not among"):
        run(compose_cfg(args))
    with pytest.raises(ProbeError, match=r"Run `python -m probe stage=extract encoder=hf "
                       r"encoder.feature=last4 dataset=digits`"):  # fmt: skip
        run(compose_cfg([*args[:-1], "stage=probe", "encoder.feature=last4"]))
    with pytest.raises(ProbeError, match="encoder.features does not apply"):
        run(compose_cfg([*dirs, "+encoder.features=[cls]"]))  # pixels: one unnamed feature


def test_default_entries_keep_their_fingerprint(dirs) -> None:
    """New keys (`width`, `features`) never move an existing cache entry."""
    from probe.features.cache import ENCODER_IGNORED, digest, fingerprint

    assert {"width", "features"} <= ENCODER_IGNORED
    for name in ("mlcd_l14", "dfn5b_h14"):
        enc = OmegaConf.to_container(compose_cfg([f"encoder={name}"]).encoder, resolve=True)
        old = {k: v for k, v in enc.items() if k not in ("width", "features")}
        fp = {"dataset": {"name": "d"}, "split": "train", "dtype": "float32"}
        assert digest(fingerprint(encoder=enc, **fp)) == digest(fingerprint(encoder=old, **fp))


def _two_kind_encoder(calls: list[int]):
    from probe.encoders.base import Encoder

    def forward(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(len(batch))
        return {"a": batch * torch.ones(3), "b": -batch * torch.arange(1.0, 6.0)}

    return Encoder(transform=lambda x: torch.tensor([x], dtype=torch.float32), forward=forward,
                   kinds=("a", "b"))  # fmt: skip


def test_one_pass_resumes_a_partial_kind_and_fills_a_new_one(tmp_path: Path, caplog) -> None:
    """Entry b is half done (a killed run); a is new: one pass, b redoes only its missing shard."""
    from probe.datasets.base import Split
    from probe.features.cache import CacheEntry
    from probe.features.extract import extract_entries

    split = Split(items=list(range(100)), labels=np.arange(100) % 3, load=float)
    kw = {"split": split, "batch_size": 16, "num_workers": 0, "desc": "toy", "shard_size": 40}
    b = CacheEntry(tmp_path / "b", {"k": "b"})
    extract_entries(encoder=_two_kind_encoder([]), entries={"b": b}, **kw)
    (b.path / "meta.json").unlink()  # back to a partial entry: its shard records ...
    (b.path / "progress").mkdir()
    for i, (start, stop) in enumerate([(0, 40), (40, 80)]):  # ... for two of three shards
        rows = np.load(b.path / "features.npy")[start:stop]
        (b.path / "progress" / f"{i:08d}.json").write_text(json.dumps(
            {"index": i, "start": start, "stop": stop, "sha256": _sha(rows)}))  # fmt: skip
    (b.path / "partial.json").write_text(json.dumps(
        {"n": 100, "dim": 5, "shard_size": 40, "content_hash": split.content_hash(),
         "fingerprint": {"k": "b"}}))  # fmt: skip
    calls: list[int] = []
    a = CacheEntry(tmp_path / "a", {"k": "a"})
    caplog.set_level("INFO")
    extract_entries(encoder=_two_kind_encoder(calls), entries={"a": a, "b": b}, **kw)
    assert "resuming, 2 of 3 shards already written" in caplog.text
    assert sum(calls) == 1 + 100, "one sample for the widths, then every row once"
    x = np.arange(100, dtype=np.float32)[:, None]
    assert np.array_equal(a.load()[0], x * np.ones(3)) and a.is_complete(n=100)
    assert np.array_equal(b.load()[0], -x * np.arange(1.0, 6.0)) and b.is_complete(n=100)


def _sha(rows: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.float32).tobytes()).hexdigest()
