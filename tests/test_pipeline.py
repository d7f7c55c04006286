"""End to end: the offline demo, the feature cache, stage handling, the hf encoder family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg, main_refuses, run_cli, run_main

from probe.core.errors import ProbeError
from probe.report.record import REQUIRED_FIELDS
from probe.run import run


def cache_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("meta.json"))


def test_demo_cli_end_to_end(tmp_path: Path) -> None:
    """`python -m probe` with no arguments, from a directory that is not the repo."""
    env = {"PROBE_CACHE_DIR": str(tmp_path / "c"), "PROBE_RESULTS_DIR": str(tmp_path / "r")}
    proc = run_cli([], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "pixels on digits: top1" in out
    assert "python -m probe encoder=mlcd_l14 dataset=cifar100" in out
    result = json.loads((tmp_path / "r" / "pixels" / "digits.json").read_text())
    assert set(REQUIRED_FIELDS) <= set(result)
    assert result["score"] > 90
    assert (result["n_train"], result["n_val"], result["n_test"]) == (1078, 269, 450)
    assert result["metric"] == "top1" and result["num_classes"] == 10
    assert result["feature_dim"] == 64 and result["backend"] == "torch"
    assert [r["C"] for r in result["search"]][:7] == pytest.approx(
        [10.0**e for e in range(-6, 7, 2)]
    )
    assert all({"C", "val_score", "converged", "iterations"} <= set(r) for r in result["search"])
    assert set(result["features"]) == {"train", "test"}
    assert set(result["seconds"]) == {"extract", "probe"}
    assert result["versions"]["scikit-learn"]


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (["eval=knn", "eval.k=[1,5]"], r"digits: top1 \d+\.\d\d% \[[\d.]+, [\d.]+\] at k=\d"),
        (["eval=fewshot", "eval.shots=[1]", "eval.seeds=1"], r"digits: top1 1-shot: [\d.]+% \("),
        (["eval=fewshot", "eval.shots=[1]", "eval.seeds=2"], r"1-shot: [\d.]+% \+- [\d.]+ \("),
    ],
)  # fmt: skip
def test_every_eval_prints_its_summary_line(dirs, caplog, extra: list[str], line: str) -> None:
    """The CLI's last line for k-NN (its k chosen on val) and few-shot (no std from one seed),
    logged by `python -m probe`'s own main, here in-process (test_demo_cli_end_to_end runs
    the command itself)."""
    import re

    caplog.set_level("INFO", logger="probe")
    assert run_main([*dirs, *extra]) is None
    assert re.search(line, caplog.text), caplog.text[-1500:]


def test_second_run_hits_cache_and_changes_reextract(dirs, tmp_path: Path, caplog) -> None:
    first = run(compose_cfg(dirs))
    entries = cache_dirs(tmp_path / "cache")
    assert len(entries) == 2
    stamps = {p: (p / "features.npy").stat().st_mtime_ns for p in entries}
    caplog.set_level("INFO")
    second = run(compose_cfg(dirs))
    assert "nothing to extract" in caplog.text
    assert second["seconds"]["extract"] == 0.0
    assert {p: (p / "features.npy").stat().st_mtime_ns for p in entries} == stamps
    assert second["score"] == first["score"] and second["C"] == first["C"]
    # a fingerprinted setting (the pixel resize) gives new entries; the old ones stay
    third = run(compose_cfg([*dirs, "encoder.size=4"]))
    assert third["feature_dim"] == 16 and third["seconds"]["extract"] > 0
    assert len(cache_dirs(tmp_path / "cache")) == 4
    # a non-fingerprinted setting (batch size, the carve) reuses the cache
    fourth = run(compose_cfg([*dirs, "batch_size=7", "dataset.val.fraction=0.3"]))
    assert fourth["seconds"]["extract"] == 0.0 and fourth["n_val"] == 404


def test_entry_without_meta_is_rebuilt(dirs, tmp_path: Path) -> None:
    ref = run(compose_cfg(dirs))
    entry = Path(ref["features"]["train"])
    (entry / "meta.json").unlink()
    np.save(entry / "features.npy", np.zeros((3, 3), np.float32))  # half-written garbage
    again = run(compose_cfg(dirs))
    assert again["seconds"]["extract"] > 0
    assert again["score"] == ref["score"]
    assert np.load(entry / "features.npy").shape == (1347, 64)


def test_stage_extract_then_probe(dirs, tmp_path: Path) -> None:
    assert run(compose_cfg([*dirs, "stage=extract"])) is None
    assert len(cache_dirs(tmp_path / "cache")) == 2
    assert not (tmp_path / "results" / "pixels").exists()
    rec = run(compose_cfg([*dirs, "stage=probe"]))
    assert rec["seconds"]["extract"] == 0.0 and rec["score"] > 90


def test_stage_probe_without_cache_fails_clearly(dirs, caplog) -> None:
    with pytest.raises(ProbeError, match="stage=extract"):
        run(compose_cfg([*dirs, "stage=probe"]))
    assert "needs cached features" in main_refuses([*dirs, "stage=probe"], caplog)


@pytest.mark.parametrize("group", ["encoder", "dataset"])
def test_unknown_name_lists_choices(group: str, tmp_path: Path) -> None:
    proc = run_cli([f"{group}=nope"], cwd=tmp_path)
    assert proc.returncode != 0
    assert f"Could not find '{group}/nope'" in proc.stderr
    assert "Available options" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_values_name_key_and_fix(dirs) -> None:
    with pytest.raises(ProbeError, match="batch_size=0"):
        run(compose_cfg([*dirs, "batch_size=0"]))
    with pytest.raises(ProbeError, match="stage='fit'"):
        run(compose_cfg([*dirs, "stage=fit"]))
    with pytest.raises(ProbeError, match="dataset.val.fraction=1.5"):
        run(compose_cfg([*dirs, "dataset.val.fraction=1.5"]))
    if not torch.cuda.is_available():
        with pytest.raises(ProbeError, match="device=cuda"):
            run(compose_cfg([*dirs, "device=cuda"]))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny random CLIP vision model saved with save_pretrained, plus its image processor."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=16,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny_clip")
    CLIPVisionModel(cfg).eval().save_pretrained(path)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(path)
    return path


def test_hf_encoder_equals_direct_forward(dirs, tiny_clip: Path) -> None:
    from transformers import CLIPVisionModel

    from probe.encoders.preprocess import build_transform, preprocess_from_hf
    from probe.run import build_dataset

    overrides = [*dirs, "encoder=hf", f"encoder.model={tiny_clip}", "stage=extract"]
    cfg = compose_cfg(overrides)
    run(cfg)
    entry = next(p for p in cache_dirs(Path(cfg.cache_dir)) if p.name.startswith("test-"))
    feats = np.load(entry / "features.npy")
    split = build_dataset(cfg).splits["test"]
    transform = build_transform(**preprocess_from_hf(tiny_clip))
    pixels = torch.stack([transform(split.load(i)) for i in split.items])
    model = CLIPVisionModel.from_pretrained(tiny_clip).eval()
    with torch.no_grad():
        ref = model(pixel_values=pixels).pooler_output.numpy()
    assert feats.shape == (450, 32)
    np.testing.assert_allclose(feats, ref, atol=1e-5, rtol=0)
    assert np.array_equal(np.load(entry / "labels.npy"), split.labels)


def test_fingerprint_locations(tmp_path: Path) -> None:
    """Moving the data root keeps the cache; two different folders never share an entry."""
    from probe.features.cache import digest, fingerprint

    def fp(root: str, data_root: str, model: str = "org/model") -> str:
        enc = {"name": "e", "model": model}
        ds = {"name": "d", "root": root}
        return digest(fingerprint(encoder=enc, dataset=ds, split="train", dtype="float32",
                                  data_root=data_root))  # fmt: skip

    assert fp("/a/data/cifar", "/a/data") == fp("/b/scratch/cifar", "/b/scratch")
    assert fp("/a/folder1", "/data") != fp("/a/folder2", "/data")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"x" * 10)
    before = fp("/d/x", "/d", model=str(model))
    assert before == fp("/d/x", "/d", model=str(model))
    (model / "weights.bin").write_bytes(b"y" * 11)  # a re-converted checkpoint, same path
    assert fp("/d/x", "/d", model=str(model)) != before


def test_model_free_encoders_record_the_dtype_they_compute_in(dirs, tmp_path: Path) -> None:
    """pixels and precomputed have no model to autocast: float32 whatever encoder.dtype says
    (issue 13, defect 7); the cache entry is the same one a plain run uses."""
    plain = run(compose_cfg([*dirs, "stage=extract"]))
    assert plain is None
    entries = cache_dirs(tmp_path / "cache")
    rec = run(compose_cfg([*dirs, "encoder.dtype=bfloat16"]))
    assert rec["dtype"] == "float32" and rec["seconds"]["extract"] == 0.0
    assert cache_dirs(tmp_path / "cache") == entries
    assert json.loads((entries[0] / "meta.json").read_text())["fingerprint"]["dtype"] == "float32"
    rng = np.random.default_rng(0)
    npz = tmp_path / "feats.npz"
    np.savez(npz, x_train=rng.normal(size=(60, 4)), y_train=np.arange(60) % 3,
             x_test=rng.normal(size=(30, 4)), y_test=np.arange(30) % 3)  # fmt: skip
    rec = run(compose_cfg([*dirs, "encoder=precomputed", "dataset=npz", f"dataset.path={npz}",
                           "encoder.dtype=bfloat16"]))  # fmt: skip
    assert rec["dtype"] == "float32"
