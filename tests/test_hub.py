"""Hub revisions pinned to commits, and the library versions a cache entry was made with.

The hub cache here is built file by file in huggingface_hub's own layout (its
`file_download.py`): `models--ORG--NAME/blobs/HASH`, `snapshots/COMMIT/FILE` as relative
symlinks to the blobs, `refs/main` holding the commit. The hub client and transformers read
it offline exactly as they read a cache they downloaded; a re-upload is a new snapshot and
`refs/main` moved to it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import fakes
import numpy as np
import pytest
import torch
from conftest import compose_cfg

from probe.core.factory import make
from probe.features.stage import pin_encoder
from probe.run import run

REPO_ID = "probe-test/tiny-clip"


class Hub:
    """A local hub cache that models get 'uploaded' to (a new commit per upload)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def publish(self, repo: str, folder: Path, *, ref: str = "main") -> str:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        listing = b"".join(p.name.encode() + hashlib.sha256(p.read_bytes()).digest() for p in files)
        commit = hashlib.sha1(listing).hexdigest()
        base = self.root / ("models--" + repo.replace("/", "--"))
        for f in files:
            data = f.read_bytes()
            blob = base / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = base / "snapshots" / commit / f.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
        (base / "refs").mkdir(exist_ok=True)
        (base / "refs" / ref).write_text(commit)
        return commit


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Hub:
    """huggingface_hub (and transformers through it) offline, on a cache in tmp_path."""
    from huggingface_hub import constants

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return Hub(root)


def tiny_clip(path: Path, seed: int) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=16, patch_size=8,
    )  # fmt: skip
    CLIPVisionModel(cfg).eval().save_pretrained(path)
    CLIPImageProcessor(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}
    ).save_pretrained(path)
    return path


def test_reupload_is_reextracted_and_the_result_names_the_commit(hub, dirs, tmp_path) -> None:
    """Defect 6: `revision: main` is the commit it names; a moved `main` is new features."""
    first = hub.publish(REPO_ID, tiny_clip(tmp_path / "v1", seed=0))
    images = fakes.make("imagefolder", tmp_path / "data")  # 24 tiny PNGs in class folders
    args = [*dirs, "encoder=hf", f"encoder.model={REPO_ID}", "dataset=imagefolder",
            *images.overrides, "num_workers=0"]  # fmt: skip
    rec = run(compose_cfg(args))
    assert rec["weights"] == {"model": REPO_ID, "revision": "main", "commit": first}
    assert rec["config"]["encoder"]["revision"] == first
    saved = json.loads(Path(rec["path"]).read_text())
    assert saved["weights"]["commit"] == first
    old = Path(rec["features"]["test"])
    meta = json.loads((old / "meta.json").read_text())
    assert meta["fingerprint"]["encoder"]["revision"] == first

    second = hub.publish(REPO_ID, tiny_clip(tmp_path / "v2", seed=1))  # re-uploaded to main
    assert run(compose_cfg([*args, "stage=extract"])) is None
    entries = sorted(p.parent for p in (tmp_path / "cache").rglob("test-*/meta.json"))
    assert len(entries) == 2, "the re-uploaded weights must not reuse the old features"
    (new,) = (p for p in entries if p != old)
    assert json.loads((new / "meta.json").read_text())["fingerprint"]["encoder"]["revision"] == (
        second
    )
    assert not np.array_equal(np.load(old / "features.npy"), np.load(new / "features.npy"))
    # a pinned commit needs no ref: the old weights are still there, by hash
    again = run(compose_cfg([*args, f"encoder.revision={first}", "stage=extract"]))
    assert again is None and len(list((tmp_path / "cache").rglob("test-*/meta.json"))) == 2


def test_open_clip_loads_the_pinned_commit(hub, tmp_path: Path) -> None:
    """open_clip fetches through hf_hub_download at encoder.revision: the pinned commit's
    weights are the ones loaded, even after `main` moved on."""
    import open_clip
    from tiny import RES, WIDTH
    from tiny import _open_clip as _tiny_open_clip

    torch.manual_seed(0)
    first = hub.publish("probe-test/tiny-open-clip", _tiny_open_clip(tmp_path / "a"))
    cfg = compose_cfg(["encoder=dfn5b_h14", "encoder.model=probe-test/tiny-open-clip",
                       f"encoder.resolution={RES}", f"encoder.width={WIDTH}"])  # fmt: skip
    pinned, weights = pin_encoder(cfg)
    assert weights["commit"] == first and pinned.encoder.revision == first
    torch.manual_seed(1)
    hub.publish("probe-test/tiny-open-clip", _tiny_open_clip(tmp_path / "b"))
    encoder = make(pinned.encoder, device="cpu", dtype="float32")
    want = open_clip.create_model(f"local-dir:{tmp_path / 'a'}").visual.conv1.weight
    assert torch.equal(encoder.forward.visual.conv1.weight, want)
    assert pin_encoder(cfg)[1]["commit"] != first


def test_meta_records_library_versions_and_reuse_warns_on_drift(dirs, tmp_path, caplog) -> None:
    from importlib.metadata import version

    run(compose_cfg([*dirs, "stage=extract"]))
    (meta_path,) = sorted((tmp_path / "cache").rglob("train-*/meta.json"))
    meta = json.loads(meta_path.read_text())
    assert meta["libraries"]["pillow"] == version("pillow")
    assert meta["libraries"]["torchvision"] == version("torchvision")
    assert meta["libraries"]["transformers"] == version("transformers")
    caplog.set_level("WARNING")
    run(compose_cfg([*dirs, "stage=extract"]))
    assert "other library versions" not in caplog.text
    meta["libraries"]["pillow"] = "9.0.0"
    meta_path.write_text(json.dumps(meta))
    run(compose_cfg([*dirs, "stage=extract"]))
    assert f"other library versions (pillow 9.0.0 -> {version('pillow')})" in caplog.text


def test_unset_model_is_one_line(dirs) -> None:
    from probe.core.errors import ProbeError

    with pytest.raises(ProbeError, match="encoder.model is not set for encoder hf; give a hub"):
        run(compose_cfg([*dirs, "encoder=hf", "stage=extract"]))
