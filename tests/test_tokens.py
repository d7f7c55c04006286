"""The token cache (`encoder.feature=tokens`): N x T x D float16 entries of a block's final-norm
tokens, pooled or not, on the tiny saved models of tests/tiny.py; resumed after SIGKILL; sized
and refused before a run that cannot fit; read by the attentive probe through the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg
from faultkit import entries, finished, output, popen, shards_done, sigkill, wait_for
from omegaconf import OmegaConf
from tiny import standin

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.features.cache import CacheEntry
from probe.features.layout import layouts
from probe.report.record import name_overrides, result_name
from probe.run import build_dataset, run

TOL = 1e-3  # one float16 step at the tokens' magnitudes (about 1)
KINDS = "encoder.features=[tokens,tokens.l1,cls]"
# pixels on digits as 1 + 16 tokens of 4 (tests/stubs.py), slowly: 22 shards of train
SLOW_TOKENS = ["encoder._target_=tests.stubs.slow_tokens", "+encoder.delay=0.03",
               "+encoder.feature=tokens", "batch_size=16", "extract.shard_size=64",
               "num_workers=0", "stage=extract"]  # fmt: skip


def dirs_in(tmp: Path, cache: str = "cache") -> list[str]:
    return [f"cache_dir={tmp / cache}", f"results_dir={tmp / 'results'}",
            f"data_root={tmp / 'data'}"]  # fmt: skip


def hf_args(tiny: dict, key: str = "clip_vision_model") -> list[str]:
    return ["encoder=hf", f"encoder.model={tiny[key]}", "encoder.preprocess={size: 32}"]


def by_kind(cache: Path) -> dict[str, Path]:
    """`split/kind[/pool]` -> finished entry directory."""
    out = {}
    for meta in cache.rglob("meta.json"):
        fp = json.loads(meta.read_text())["fingerprint"]
        pool = fp["encoder"].get("token_pool")
        out[f"{fp['split']}/{fp['encoder']['feature']}" + (f"/{pool}" if pool else "")] = (
            meta.parent
        )
    return out


@pytest.fixture(scope="module")
def clip_cache(tiny, tmp_path_factory) -> tuple[Path, list[str]]:
    """tokens, tokens of block 1 and cls of the tiny CLIP on digits, from one pass (4 x 4
    patches of 8 px at 32 px: 1 + 16 tokens of 32); stage=extract under the default eval."""
    tmp = tmp_path_factory.mktemp("tokens")
    args = [*hf_args(tiny), "encoder.feature=tokens", KINDS, *dirs_in(tmp)]
    run(compose_cfg([*args, "stage=extract"]))
    return tmp / "cache", args


def transformers_tokens(tiny: dict, cfg, rows: int) -> tuple[torch.Tensor, ...]:
    """The first `rows` train images through transformers' own CLIPVisionModel: the final
    tokens after `post_layernorm` (transformers applies it to the pooled CLS only) and block
    1's (`hidden_states[2]`) after the same norm."""
    import transformers as tf

    split = build_dataset(cfg).splits["train"]
    encoder = make(cfg.encoder, device="cpu", dtype="float32")
    x = torch.stack([encoder.transform(split.load(i)) for i in split.items[:rows]])
    net = tf.CLIPVisionModel.from_pretrained(tiny["clip_vision_model"]).eval()
    with torch.no_grad():
        out = net(pixel_values=x, output_hidden_states=True)
        norm = net.post_layernorm
        return norm(out.last_hidden_state), norm(out.hidden_states[2])


def test_token_cache_round_trips(tiny, clip_cache) -> None:
    cache, args = clip_cache
    found = by_kind(cache)
    assert sorted(found) == ["test/cls", "test/tokens", "test/tokens.l1", "train/cls",
                             "train/tokens", "train/tokens.l1"]  # fmt: skip
    entry = found["train/tokens"]
    meta = json.loads((entry / "meta.json").read_text())
    assert (meta["n"], meta["dim"], meta["dtype"]) == (1347, 32, "float16")
    assert meta["features"] == {"shape": [1347, 17, 32], "dtype": "float16"}
    assert meta["tokens"] == {"prefix": 1, "grid": [4, 4], "patch_grid": [4, 4], "pool": None}
    feats, labels = CacheEntry(entry, meta["fingerprint"]).load()
    assert feats.shape == (1347, 17, 32) and feats.dtype == np.float16 and len(labels) == 1347
    assert CacheEntry(entry, meta["fingerprint"]).problems(n=1347) == []  # float16 checksums
    final, block1 = transformers_tokens(tiny, compose_cfg(args), rows=48)
    layer = np.load(found["train/tokens.l1"] / "features.npy", mmap_mode="r")
    for got, want in ((feats, final), (layer, block1)):
        np.testing.assert_allclose(np.asarray(got[:48], np.float32), want.numpy(), rtol=TOL,
                                   atol=TOL)  # fmt: skip
    # the pooled kind of the same pass is untouched: float32 N x D, no token blocks
    cls_meta = json.loads((found["train/cls"] / "meta.json").read_text())
    assert (
        "features" not in cls_meta and "tokens" not in cls_meta and cls_meta["dtype"] == "float32"
    )
    cls = np.load(found["train/cls"] / "features.npy")
    assert cls.shape == (1347, 32) and np.allclose(cls, feats[:, 0], rtol=TOL, atol=TOL)


def test_pooled_tokens_are_an_average_pool_of_the_full_tokens(tiny, clip_cache, tmp_path) -> None:
    cache, args = clip_cache
    pooled_args = [*args[:-3], *dirs_in(tmp_path), "encoder.features=null",
                   "encoder.token_pool=2"]  # fmt: skip
    run(compose_cfg([*pooled_args, "stage=extract"]))
    [(key, entry)] = [(k, p) for k, p in by_kind(tmp_path / "cache").items() if "train" in k]
    assert key == "train/tokens/2"
    assert entry.name != by_kind(cache)["train/tokens"].name, "a pool is its own entry"
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["tokens"] == {"prefix": 1, "grid": [2, 2], "patch_grid": [4, 4], "pool": 2}
    full = np.load(by_kind(cache)["train/tokens"] / "features.npy").astype(np.float32)
    pooled = np.load(entry / "features.npy")
    assert pooled.shape == (1347, 1 + 4, 32) and pooled.dtype == np.float16
    assert np.array_equal(pooled[:, :1], full[:, :1].astype(np.float16)), "prefix kept as is"
    # a 4 x 4 raster of patches -> 2 x 2 windows of 2 x 2, each the plain mean
    windows = full[:, 1:].reshape(1347, 2, 2, 2, 2, 32).mean(axis=(2, 4)).reshape(1347, 4, 32)
    np.testing.assert_allclose(pooled[:, 1:].astype(np.float32), windows, rtol=TOL, atol=TOL)
    cfg = compose_cfg([*pooled_args, "eval=attentive"])
    assert result_name(cfg.encoder, cfg.probe) == "hf@tokens@pool2"
    assert name_overrides("hf@tokens@pool2") == ["encoder=hf", "encoder.feature=tokens",
                                                 "encoder.token_pool=2"]  # fmt: skip


def test_attentive_reads_the_token_cache_through_the_cli(clip_cache) -> None:
    _, args = clip_cache
    grid = ["eval=attentive", "eval.lrs=[0.003]", "eval.wds=[0.001]", "eval.epochs=1",
            "eval.heads=2", "eval.batch_size=256", "eval.warmup_epochs=0"]  # fmt: skip
    rec = run(compose_cfg([*args, *grid, "stage=probe"]))
    assert rec["path"].endswith("hf@tokens/digits.attentive.json")
    assert rec["feature"] == "tokens" and rec["feature_dim"] == 32 and rec["dtype"] == "float32"
    assert (
        rec["head_settings"]["tokens"] == 16 and rec["head_settings"]["prefix_tokens_skipped"] == 1
    )


@pytest.mark.parametrize(("key", "prefix"), [("dinov2_with_registers", 5),
                                             ("siglip_vision_model", 0)])  # fmt: skip
def test_the_prefix_count_is_the_models(tiny, key: str, prefix: int) -> None:
    cfg = compose_cfg([*hf_args(tiny, key), "encoder.feature=tokens", "encoder.token_pool=2"])
    encoder = make(cfg.encoder, device="cpu", dtype="float32")
    [lay] = layouts(encoder, torch.zeros(3, 32, 32), desc="tiny").values()
    assert lay.shape == (prefix + 4, 32) and lay.dtype == "float16"
    assert lay.tokens == {"prefix": prefix, "grid": [2, 2], "patch_grid": [4, 4], "pool": 2}
    assert lay.key(7)["features"] == {"shape": [7, prefix + 4, 32], "dtype": "float16"}


# -- kill and resume ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stub_reference(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("stub")
    fast = [a if "encoder.delay" not in a else "+encoder.delay=0" for a in SLOW_TOKENS]
    run(compose_cfg([*dirs_in(tmp), *fast]))
    return {"cache": tmp / "cache", "arrays": finished(tmp / "cache")}


def test_killed_token_extraction_resumes_bit_identical(tmp_path, stub_reference, caplog) -> None:
    cache = tmp_path / "cache"
    proc = popen([*dirs_in(tmp_path), *SLOW_TOKENS], cwd=tmp_path)
    assert wait_for(lambda: shards_done(cache, "train") >= 3, proc=proc), output(proc)
    sigkill(proc)
    [entry] = entries(cache, "train")
    assert not (entry / "meta.json").exists()
    kept = shards_done(cache, "train")
    caplog.set_level("INFO")
    run(compose_cfg([*dirs_in(tmp_path), *SLOW_TOKENS]))
    assert f"resuming, {kept} of 22 shards already written" in caplog.text
    got = finished(cache)
    for split, (feats, labels) in stub_reference["arrays"].items():
        assert got[split][0] == feats, f"{split}: the resumed token cache differs"
        assert np.array_equal(got[split][1], labels)
    assert np.load(entry / "features.npy", mmap_mode="r").shape == (1347, 17, 4)


def test_a_damaged_token_entry_is_found(tmp_path, stub_reference) -> None:
    shutil.copytree(stub_reference["cache"], tmp_path / "cache")
    [entry] = entries(tmp_path / "cache", "train")
    meta = json.loads((entry / "meta.json").read_text())
    with open(entry / "features.npy", "r+b") as fh:  # row 700: 17 x 4 float16 = 136 bytes a row
        fh.seek(128 + 700 * 136 + 3)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0x40]))
    assert CacheEntry(entry, meta["fingerprint"]).problems() == [
        "checksum mismatch in rows 640-703 of features.npy (shard 10)"
    ]
    bad = {**meta, "tokens": {**meta["tokens"], "prefix": 2}}
    (entry / "meta.json").write_text(json.dumps(bad))
    [why] = CacheEntry(entry, meta["fingerprint"]).problems()
    assert "do not make the (17, 4) rows of features" in why


# -- the disk check -----------------------------------------------------------------------------
def _free(monkeypatch, free: int) -> None:
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: type(usage)(usage.total, 0, free))


def test_the_disk_check_refuses_naming_the_pool_that_fits(tmp_path, monkeypatch) -> None:
    """digits, 1,797 images of 1 + 16 tokens of 4 float16: 244,392 bytes; pooled to 2 x 2,
    71,880; to 1 x 1, 28,752."""
    args = [*dirs_in(tmp_path), *SLOW_TOKENS[:1], "+encoder.feature=tokens", "stage=extract"]
    _free(monkeypatch, 100_000)
    with pytest.raises(ProbeError, match=r"this run's token cache needs 244\.4 kB but the file "
                       r"system of cache_dir=.* has 100\.0 kB free \(shutil\.disk_usage\); set "
                       r"encoder\.token_pool=2 \(71\.9 kB: 2 x 2 patch tokens") as err:  # fmt: skip
        run(compose_cfg(args))
    assert "\n" not in str(err.value)
    _free(monkeypatch, 20_000)
    with pytest.raises(ProbeError, match=r"even encoder\.token_pool=1 needs 28\.8 kB; free"):
        run(compose_cfg([*args, "+encoder.token_pool=2"]))
    assert not list(tmp_path.rglob("features.npy")), "an entry was started"


def test_the_dry_run_sizes_the_token_cache_and_names_the_pool(monkeypatch) -> None:
    from probe.launch.sizes import run_size, token_space_lines

    def cfg(*extra: str):
        return compose_cfg(["encoder=clip_l14", "dataset=cifar100", "encoder.feature=tokens",
                            "eval=attentive", "cache_dir=/tmp", *extra])  # fmt: skip

    full = run_size(cfg())
    assert full.cache_bytes == 60_000 * 577 * 1024 * 2 and full.probe is None  # 70.9 GB
    assert run_size(cfg("encoder.token_pool=8")).cache_bytes == 60_000 * 65 * 1024 * 2
    both = run_size(cfg("encoder.features=[tokens,cls]"))
    assert both.cache_bytes == 60_000 * (577 * 1024 * 2 + 1024 * 4)
    _free(monkeypatch, 10 * 10**9)
    [line] = token_space_lines([cfg()])
    assert line.startswith("does not fit: the token cache of these runs needs 70.9 GB")
    assert "set encoder.token_pool=8 (8.0 GB: 8 x 8 patch tokens an image)" in line
    _free(monkeypatch, 100 * 10**9)
    assert token_space_lines([cfg()])[0].endswith("100.0 GB free): fits")
    assert token_space_lines([cfg("encoder.feature=cls")]) == []


# -- bad input ----------------------------------------------------------------------------------
def test_bad_input_is_one_line_before_any_work(tiny, tmp_path) -> None:
    cases = [
        (["+encoder.feature=tokens"], r"encoder=pixels has no tokens"),
        (["encoder=clip_l14", "encoder.feature=tokens", "encoder.token_pool=5", "stage=extract"],
         r"encoder.token_pool=5 does not divide the 24 x 24 patch grid of encoder=clip_l14 at "
         r"336 px; use one of 24, 12, 8, 6, 4, 3, 2, 1"),
        ([*hf_args(tiny), "encoder.feature=tokens"], r"eval=linear needs pooled features .*"
         r"use eval=attentive"),
        ([*hf_args(tiny), "encoder.feature=tokens", "eval=knn"], r"eval=knn needs pooled"),
        ([*hf_args(tiny), "encoder.token_pool=2"], r"encoder.token_pool=2 pools the token cache, "
         r"but no token kind is asked for"),
        ([*hf_args(tiny), "encoder.feature=tokens", "eval=attentive", "probe.normalize=l2"],
         r"probe.normalize=l2 normalises pooled feature rows"),
        ([*hf_args(tiny), "encoder.feature=tokens", "encoder.token_pool=3", "stage=extract"],
         r"encoder.token_pool=3 does not divide the 4 x 4 patch grid of hf/digits; use one of "
         r"4, 2, 1"),
        ([*standin("clip_l14", tiny, tmp_path), "encoder=clip_l14", "encoder.feature=tokens",
          "stage=extract"], r"encoder.patch_size=14 at encoder.resolution=32 makes a 2 x 2 "
         r"patch grid, but clip_l14 gives 4 x 4; fix encoder.patch_size"),
    ]  # fmt: skip
    for extra, message in cases:
        with pytest.raises(ProbeError, match=message) as err:
            run(compose_cfg([*dirs_in(tmp_path), *extra]))
        assert "\n" not in str(err.value)
    assert not list(tmp_path.rglob("features.npy")), "an entry was started"


def test_a_cnn_has_no_tokens(tiny, tmp_path) -> None:
    args = [*standin("ig_resnext101_32x8d", tiny, tmp_path), "encoder=ig_resnext101_32x8d",
            "encoder.feature=tokens"]  # fmt: skip
    with pytest.raises(ProbeError, match=r"encoder.feature=tokens \(every token, the token cache"
                       r"\) is not available for .*which has no token sequence"):  # fmt: skip
        make(compose_cfg(args).encoder)


# -- the 2-D entries ----------------------------------------------------------------------------
def test_pooled_entries_keep_their_files_and_fingerprints(tmp_path) -> None:
    """pixels on digits, as the code before the token cache wrote it (computed at ed95ee9):
    the entry directories (their fingerprints), the bytes of features.npy and meta.json's
    fields; and every encoder config's fingerprint, whatever its new keys hold."""
    from probe.features.cache import digest, fingerprint

    run(compose_cfg([*dirs_in(tmp_path), "stage=extract", "extract.shard_size=512"]))
    pinned = {
        "pixels/digits/test-fdcb3aca1e47a3c6": "2f13cbbcd524b9a069216ae3dc207d23a55c379cdd5ecdd4"
        "3679c9c63e6253cb",
        "pixels/digits/train-12b353c6679032c9": "d5fe8dd617523c3689d9dec68c5451cb64d48b4bcecd4c6c"
        "821a83dcedc1b3d7",
    }
    got = {}
    for meta in (tmp_path / "cache").rglob("meta.json"):
        name = str(meta.parent.relative_to(tmp_path / "cache"))
        got[name] = hashlib.sha256((meta.parent / "features.npy").read_bytes()).hexdigest()
        fields = json.loads(meta.read_text())
        assert sorted(fields) == ["checksum", "content_hash", "dataset", "dim", "dtype",
                                  "fingerprint", "images_per_second", "libraries", "n",
                                  "seconds"]  # fmt: skip
        assert fields["dtype"] == "float32"
    assert got == pinned
    new = ("token_pool", "patch_size", "prefix_tokens")
    fp = {"dataset": {"name": "d"}, "split": "train", "dtype": "float32"}
    for path in sorted((Path(__file__).parent.parent / "configs" / "encoder").glob("*.yaml")):
        for kind in ("cls",):  # every kind but a token kind drops token_pool alike
            over = [f"encoder={path.stem}", f"++encoder.feature={kind}", "++encoder.token_pool=8"]
            enc = OmegaConf.to_container(compose_cfg(over).encoder, resolve=True,
                                         throw_on_missing=False)  # fmt: skip
            old = {k: v for k, v in enc.items() if k not in new}
            assert digest(fingerprint(encoder=enc, **fp)) == digest(
                fingerprint(encoder=old, **fp)
            ), path.stem


def test_the_extraction_bench_measures_the_token_path(tmp_path, capsys) -> None:
    from probe.bench.__main__ import main

    argv = ["extract", "encoder=mlcd_l14", "encoder.feature=tokens", "encoder.token_pool=2",
            "--shape", "tiny", "--n-images", "16", "--batch-size", "8", "--iters", "1",
            "--device", "cpu", "--num-workers", "0", "--images", str(tmp_path / "jpegs"),
            "--json", str(tmp_path / "bench.json")]  # fmt: skip
    assert main(argv) == 0
    assert "feature tokens" in capsys.readouterr().out
    res = json.loads((tmp_path / "bench.json").read_text())
    assert (res["feature"], res["token_pool"]) == ("tokens", 2) and res["pipeline_images_per_s"] > 0
