"""protocol=clip_benchmark: CLIP_benchmark's linear probe as `eval=sgd_linear` with the card's
settings, against the transcription of its code (tests/reference_heads.py): the weight-decay
search, one head's training, what it does without a val split, and the card's `eval:` block.
"""

from __future__ import annotations

import fakes
import numpy as np
import pytest
import reference_heads as ref
import torch
from conftest import compose_cfg
from test_npz import overrides, write
from test_protocols import _facts, split_feats

from probe.core.card import apply_card
from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.evaluations.outcome import Task
from probe.evaluations.pooler import LinearHeads
from probe.evaluations.search import clip_benchmark_peak
from probe.evaluations.trainer import Schedule, Source, batches, buffer_rows, train
from probe.run import run

CARD = ["protocol=clip_benchmark", "eval=sgd_linear", "encoder=clip_b16"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_wd_search_is_clip_benchmarks() -> None:
    """Val accuracies with plateaus, ties and all-zero regions: the same chosen index, and
    the same points asked for, as linear_probe.py 128-139 and 266-278."""
    grid = np.logspace(-6, 2, 97)
    ours = clip_benchmark_peak(grid=grid, initial=np.logspace(-6, 2, 7), span=8)
    assert ours.initial == (0, 16, 32, 48, 64, 80, 96)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        acc = np.round(rng.random(97) * rng.integers(1, 4), 1) * (rng.random() > 0.1)
        asked_theirs, asked_ours = set(), set()

        def theirs_acc(k, asked=asked_theirs, acc=acc):
            asked.add(k)
            return acc[k]

        def score_at(ks, asked=asked_ours, acc=acc):
            asked.update(ks)
            return {k: acc[k] for k in ks}

        assert ours.choose(score_at) == ref.clip_benchmark_search(theirs_acc), seed
        assert asked_ours == asked_theirs and len(asked_ours) <= ours.most_fits


def test_one_linear_head_trains_as_clip_benchmarks_train() -> None:
    """LinearHeads with the card's schedule (no warmup, cosine from step 0, final 0) against
    `train` (linear_probe.py 59-107, CPU, float32) fed the same batches."""
    X, y = split_feats(val=False)["train"]
    ours = train(LinearHeads(grid=1, dim=6, num_classes=3, seed=0), Source(X), y, lrs=[0.1],
                 wds=[1e-3], schedule=Schedule(epochs=3, warmup_epochs=0, start_lr=None,
                                               final_lr=0.0, first_step=0),
                 batch=16, seed=2, device="cpu")  # fmt: skip
    rng = np.random.Generator(np.random.PCG64(2))
    epochs = [[(torch.from_numpy(xb), torch.from_numpy(yb)) for xb, yb in
               batches(Source(X), y, batch=16, rng=rng, buffer=buffer_rows(Source(X), 2048))]
              for _ in range(3)]  # fmt: skip
    theirs = ref.clip_benchmark_train(epochs, 6, 3, 1e-3, 0.1, 3, seed=0)
    np.testing.assert_allclose(ours.head(0)["coef"], theirs.weight.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(ours.head(0)["intercept"], theirs.bias.detach().numpy(), atol=1e-5)


def test_the_card_sets_the_trainer_and_refuses_other_evals() -> None:
    cfg = apply_card(compose_cfg(CARD))
    assert (cfg.encoder.feature, cfg.probe.normalize) == ("projected", "l2")
    assert (list(cfg.eval.lrs), cfg.eval.epochs, cfg.eval.batch_size) == ([0.1], 10, 64)
    assert (cfg.eval.first_step, cfg.eval.warmup_epochs, cfg.eval.wd_without_val) == (0, 0, 0.0)
    assert apply_card(cfg) == cfg  # idempotent
    built = make(cfg.eval)
    assert len(built.keywords["wds"]) == 97
    assert built.keywords["search"](grid=built.keywords["wds"]).initial[-1] == 96
    with pytest.raises(ProbeError, match="protocol=clip_benchmark defines eval=sgd_linear only"):
        apply_card(compose_cfg([*CARD[:1], "encoder=clip_b16"]))


def _task(feats, official_val: bool) -> Task:
    rules = make(compose_cfg(CARD).protocol.linear)
    train_, val, test = rules.splits(_facts(official_val), feats)
    return Task(train=train_, val=val, test=test, num_classes=3, metric=rules.metric,
                device="cpu", make_solver=None, bootstrap={"resamples": 50},
                refit_on=rules.refit_on)  # fmt: skip


def test_with_a_val_split_the_search_runs_then_train_plus_val() -> None:
    evaluation = make(apply_card(compose_cfg(CARD)).eval)
    out = evaluation(_task(split_feats(val=True), official_val=True))
    tried = [r["wd"] for r in out.fields["grid"]]
    assert 7 <= len(tried) <= 15 and out.fields["wd"] in tried
    assert out.fields["final_fit"] == {"rows": "train+val", "head": "retrained at the chosen point"}
    assert out.fields["score"] > 50


def test_without_a_val_split_weight_decay_zero_on_train() -> None:
    """cli.py 348-360 with neither --val_split nor --val_proportion: no search, wd 0, train."""
    evaluation = make(apply_card(compose_cfg(CARD)).eval)
    out = evaluation(_task(split_feats(val=True), official_val=False))
    assert out.fields["grid"] == [] and (out.fields["lr"], out.fields["wd"]) == (0.1, 0.0)
    assert out.fields["final_fit"]["rows"] == "train"


def test_the_card_on_your_own_features(dirs, tmp_path) -> None:
    path = write(tmp_path / "f.npz", val=True)
    rec = run(compose_cfg(overrides(dirs, path, "protocol=clip_benchmark", "eval=sgd_linear",
                                    "bootstrap.resamples=20")))  # fmt: skip
    assert rec["encoder"] == "precomputed@l2@clip_benchmark" and rec["normalize"] == "l2"
    assert rec["protocol_features"] == "user" and rec["epochs"] == 10 and rec["lr"] == 0.1
    assert rec["path"].endswith("precomputed@l2@clip_benchmark/npz.sgd_linear.json")


def test_the_card_on_a_clip_model_probes_its_projected_embedding(dirs, tmp_path, tiny) -> None:
    """clip_b16 (a tiny stand-in) on an image folder with an official val split: the
    projected, L2-normalised embedding, the peak search on val, the head on train + val."""
    root = tmp_path / "folders"
    for split, n in (("train", 6), ("val", 3), ("test", 2)):
        for c in "abc":
            for i in range(n):
                fakes.write_image(root / split / c / f"{i}.png", 100 * len(split) + 10 * ord(c) + i,
                                  "PNG")  # fmt: skip
    over = [*dirs, "encoder=clip_b16", f"encoder.model={tiny['clip']}", "encoder.width=32",
            "encoder.resolution=32", "dataset=imagefolder", f"dataset.root={root}", *CARD[:2],
            "bootstrap.resamples=20"]  # fmt: skip
    rec = run(compose_cfg(over))
    assert rec["encoder"] == "clip_b16@projected@l2@clip_benchmark"
    assert rec["feature"] == "projected" and rec["normalize"] == "l2"
    assert (rec["n_train"], rec["n_val"], rec["protocol_features"]) == (18, 9, "card")
    assert rec["lr"] == 0.1 and 7 <= len(rec["grid"]) <= 15
    assert rec["final_fit"] == {"rows": "train+val", "head": "retrained at the chosen point"}
