"""Protocol cards (`protocol=NAME`, configs/protocol/): each card's val rule, search and refit
against a transcription of its paper's own code, and `protocol=clip` exactly as before.

The transcriptions below copy the source lines named in each card (dinov2
`dinov2/eval/log_regression.py` at b8931f7, dinov3 `dinov3/eval/data.py` and
`log_regression.py` at 6876159, unicom `unicom/examples/linear_probe.md` at ae71411), with
scikit-learn standing in for cuML (no GPU here): the same L2 objective, solved tightly.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import fakes
import numpy as np
import pytest
import torch
from conftest import compose_cfg, config_names, run_cli
from sklearn.linear_model import LogisticRegression

from probe.core.card import apply_card
from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.datasets.base import DatasetFacts, ValSpec
from probe.encoders.kinds import KINDS
from probe.evaluations.cards import Rules
from probe.evaluations.linear import run_protocol
from probe.evaluations.metrics import score
from probe.evaluations.search import Sweep, torch_logspace
from probe.report.record import NORMALIZE_TAGS, name_overrides, result_name
from probe.run import run
from probe.solvers.sklearn import SklearnSolver

CARDS = config_names("protocol")
TIGHT = 1e-7  # both sides solve to the optimum; a C then picks the same predictions


def rules(card: str) -> Rules:
    return make(compose_cfg([f"protocol={card}"]).protocol.linear)


def _facts(official_val: bool) -> DatasetFacts:
    val = ValSpec(source="official" if official_val else "carve", fraction=0.2, seed=0)
    return SimpleNamespace(name="blobs", num_classes=3, metric="top1", val=val,
                           expected_sizes=None, info={})  # fmt: skip


def blobs(n: int, *, seed: int, d: int = 6, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).normal(size=(k, d)) * 0.6  # overlapping: no C runs away
    y = rng.integers(0, k, size=n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y.astype(np.int64)


def split_feats(*, val: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {"train": blobs(90, seed=1), "test": blobs(60, seed=2)}
    if val:
        out["val"] = blobs(30, seed=3)
    return out


# -- the cards as data --------------------------------------------------------------------
@pytest.mark.parametrize("card", CARDS)
def test_every_card_composes_builds_and_cites_its_source(card: str) -> None:
    cfg = compose_cfg([f"protocol={card}"])
    assert cfg.protocol.name == card
    built = make(cfg.protocol.linear)
    assert isinstance(built, Rules)
    if "linear" in cfg.protocol.evals:  # a card of eval=linear names its C search
        assert len(built.search.grid) >= 1
    assert card not in KINDS and card not in NORMALIZE_TAGS  # a result tag means one thing
    if card != "clip":
        src = cfg.protocol.sources
        assert src.repository and len(str(src.commit)) == 40
        text = (Path(__file__).parents[1] / "configs" / "protocol" / f"{card}.yaml").read_text()
        cited = (" lines ", "# LR ", "# EX ", "# LP ", "# CLI ")
        assert sum(text.count(c) for c in cited) >= 2


def test_the_default_card_is_clip_and_fixes_nothing() -> None:
    cfg = compose_cfg([])
    assert cfg.protocol.name == "clip"
    assert apply_card(cfg) == cfg  # the config is exactly what it was without cards


def test_result_names_carry_the_card_and_read_back() -> None:
    enc = {"name": "dinov2_l14", "feature": "cls"}
    assert result_name(enc, {}, protocol="clip") == "dinov2_l14@cls"
    assert result_name(enc, {"normalize": "l2"}, protocol="dinov2") == "dinov2_l14@cls@l2@dinov2"
    assert name_overrides("dinov2_l14@cls@dinov2") == [
        "encoder=dinov2_l14", "encoder.feature=cls", "protocol=dinov2",
    ]  # fmt: skip


# -- transcriptions of each paper's code ----------------------------------------------------
def test_dinov2_val_rows_are_dinov2s() -> None:
    feats = split_feats(val=False)
    X, y = feats["train"]
    train, val, _ = rules("dinov2").splits(_facts(False), feats)
    # dinov2/eval/log_regression.py lines 296-301, verbatim but for the names
    train_features, train_labels = torch.from_numpy(X), torch.from_numpy(y)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        indices = torch.randperm(len(train_features), device=train_features.device)
    finetune_index = indices[: len(train_features) // 10]
    train_index = indices[len(train_features) // 10 :]
    np.testing.assert_array_equal(np.asarray(val[0]), train_features[finetune_index].numpy())
    np.testing.assert_array_equal(val[1], train_labels[finetune_index].numpy())
    np.testing.assert_array_equal(np.asarray(train[0]), train_features[train_index].numpy())


def test_dinov2_pool_is_train_then_official_val() -> None:
    feats = split_feats(val=True)
    train, val, _ = rules("dinov2").splits(_facts(True), feats)
    assert len(train[1]) + len(val[1]) == 120 and len(val[1]) == 12


def test_dinov3_val_rows_are_dinov3s() -> None:
    feats = split_feats(val=False)
    X, y = feats["train"]
    y = y.copy()
    y[:1] = 5  # a class of one row stays in train (data.py line 177)
    feats["train"] = (X, y)
    train, val, _ = rules("dinov3").splits(_facts(False), feats)
    # dinov3/eval/data.py lines 93-100 (_shuffle_dataset), 76-90 and 162-182, for 1-D labels
    g = torch.Generator()
    g.manual_seed(0)
    random_indices = torch.randperm(len(y), generator=g)
    train_labels = torch.from_numpy(y)[random_indices]
    sorted_labels, indices = torch.sort(train_labels, stable=True)
    unique_labels, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    mapping = dict(zip(unique_labels.tolist(), torch.split(indices, counts.tolist()), strict=True))
    val_mask = torch.zeros(len(train_labels), dtype=bool)
    for class_indices in mapping.values():
        n_for_val = max(1, int(0.1 * len(class_indices))) if len(class_indices) > 1 else 0
        val_mask[class_indices[:n_for_val]] = True
    val_rows = random_indices[val_mask.nonzero().flatten()].numpy()
    train_rows = random_indices[(~val_mask).nonzero().flatten()].numpy()
    np.testing.assert_array_equal(np.asarray(val[0]), X[val_rows])
    np.testing.assert_array_equal(np.asarray(train[0]), X[train_rows])
    assert 5 in train[1] and 5 not in val[1]


def test_the_sweep_keeps_the_first_best_as_dinov2s_metric_tracker() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        val_scores = rng.integers(0, 4, size=45).astype(float)  # many ties
        sweep = Sweep(grid=torch_logspace(start=-6, stop=5, num=45))
        asked: list[int] = []
        batches: list[list[int]] = []

        def score_at(points: list[int], scores=val_scores, asked=asked, b=batches) -> dict:
            asked.extend(points)
            b.append(points)
            return {k: scores[k] for k in points}

        chosen = sweep.choose(score_at)
        # log_regression.py lines 236-246: MetricTracker(maximize=True).best_metric(return_step)
        # after each step is torch.max over the steps so far; best_C moves when it is step i
        best_C = None
        for i in range(45):
            _, which = torch.max(torch.tensor(val_scores[: i + 1]), 0)
            if int(which) == i:
                best_C = i
        assert chosen == best_C and sorted(asked) == list(range(45))
        assert max(len(b) for b in batches) <= 7  # no more stacked on a GPU than the CLIP search


def test_dinov2_grid_is_torch_float32_logspace() -> None:
    grid = torch_logspace(start=-6, stop=5, num=45)
    ALL_C = 10 ** torch.linspace(-6, 5, 45)  # log_regression.py lines 34 and 203
    assert [ALL_C[i].item() for i in range(45)] == grid.tolist()


def _dinov2_transcribed(feats) -> tuple[float, float]:
    """dinov2's eval_log_regression (lines 294-301, 187-249, 335-338, 341-353) on arrays, with
    scikit-learn at a tight tolerance in place of cuML: (best C, test top-1 in percent)."""
    X, y = (torch.from_numpy(a) for a in feats["train"])
    Xt, yt = feats["test"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        indices = torch.randperm(len(X))
    fi, ti = indices[: len(X) // 10], indices[len(X) // 10 :]
    Xf, yf, X, y = X[fi], y[fi], X[ti], y[ti]
    ALL_C = 10 ** torch.linspace(-6, 5, 45)
    scores = []
    for i in range(len(ALL_C)):
        model = LogisticRegression(C=ALL_C[i].item(), max_iter=10_000, tol=TIGHT)
        model.fit(X.double().numpy(), y.numpy())
        scores.append(float((model.predict(Xf.double().numpy()) == yf.numpy()).mean()))
    best = int(torch.max(torch.tensor(scores), 0)[1])
    final = LogisticRegression(C=ALL_C[best].item(), max_iter=10_000, tol=TIGHT)
    final.fit(torch.cat((X, Xf)).double().numpy(), torch.cat((y, yf)).numpy())
    return ALL_C[best].item(), float((final.predict(Xt) == yt).mean() * 100)


def test_dinov2_card_end_to_end_matches_the_transcription() -> None:
    feats = split_feats(val=False)
    r = rules("dinov2")
    train, val, test = r.splits(_facts(False), feats)
    done = run_protocol(solver=SklearnSolver(max_iter=10_000, tol=TIGHT), train=train, val=val,
                        test=test, num_classes=3, metric="top1", strategy=r.search,
                        refit_on=r.refit_on)  # fmt: skip
    best_C, test_score = _dinov2_transcribed(feats)
    assert (done.found.best_C, done.test_score) == (best_C, test_score)
    assert len(done.found.records) == 45


def test_unicom_card_is_one_fit_at_0601_on_train() -> None:
    feats = split_feats(val=True)
    r = rules("unicom")
    train, val, test = r.splits(_facts(True), feats)
    assert len(val[1]) == 0 and len(train[1]) == 90  # the official val is not used
    done = run_protocol(solver=SklearnSolver(max_iter=10_000, tol=TIGHT), train=train, val=val,
                        test=test, num_classes=3, metric=r.metric, strategy=r.search,
                        refit_on=r.refit_on)  # fmt: skip
    # unicom/examples/linear_probe.md lines 39-43 (tolerance tightened on both sides)
    classifier = LogisticRegression(random_state=0, C=0.601, max_iter=10_000, tol=TIGHT)
    classifier.fit(*feats["train"])
    predictions = classifier.predict(feats["test"][0])
    accuracy = np.mean((feats["test"][1] == predictions).astype(float)) * 100.0
    assert done.found.records == [] and done.found.best_C == 0.601
    assert done.test_score == pytest.approx(accuracy, abs=1e-12)
    assert r.metric == "top1" and score(predictions, feats["test"][1], "top1") == accuracy


# -- the pipeline ---------------------------------------------------------------------------
def test_protocol_clip_leaves_path_fingerprint_and_score_unchanged(dirs, tmp_path) -> None:
    """The run with `protocol=clip` against the same run with the protocol group removed
    from the composition (`~protocol`: the pipeline as it was before cards)."""
    fast = ["bootstrap.resamples=50"]
    carded = run(compose_cfg([*dirs, *fast, "protocol=clip"]))
    bare = run(compose_cfg([*dirs, *fast, "~protocol"]))
    for key in ("score", "score_ci", "C", "search", "features", "test_content_hash", "encoder"):
        assert carded[key] == bare[key], key
    assert carded["protocol"] == bare["protocol"] == "clip"
    assert Path(carded["features"]["train"]).parent == Path(bare["features"]["train"]).parent


def test_dinov2_card_on_a_real_encoder_fixes_feature_and_transform(dirs, tmp_path, tiny) -> None:
    root = tmp_path / "folders"
    for split, n in (("train", 10), ("test", 2)):
        for c in "abc":
            for i in range(n):
                seed = 100 * len(split) + 10 * ord(c) + i
                fakes.write_image(root / split / c / f"{i}.png", seed, "PNG")
    over = [*dirs, "encoder=dinov2_l14", f"encoder.model={tiny['dinov2']}", "encoder.width=32",
            "dataset=imagefolder", f"dataset.root={root}", "protocol=dinov2",
            "bootstrap.resamples=20", "encoder.resolution=999"]  # fmt: skip
    rec = run(compose_cfg(over))
    assert rec["encoder"] == "dinov2_l14@cls@dinov2" and rec["protocol"] == "dinov2"
    assert Path(rec["path"]).parent.name == "dinov2_l14@cls@dinov2"
    enc = rec["config"]["encoder"]
    assert (enc["feature"], enc["resolution"]) == ("cls", 224)  # the card wins
    assert enc["preprocess"] == {"size": 224, "crop": 224, "mode": "shortest",
                                 "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406],
                                 "std": [0.229, 0.224, 0.225]}  # fmt: skip
    assert rec["protocol_features"] == "card" and len(rec["search"]) == 45
    assert (rec["n_train"], rec["n_val"]) == (27, 3)  # 1 in 10 of the 30 train images
    assert rec["config"]["probe"]["tol"] == 1e-5


def test_a_card_on_your_own_features_says_they_were_yours(dirs, tmp_path) -> None:
    from test_npz import overrides, write

    path = write(tmp_path / "f.npz")
    rec = run(compose_cfg([*overrides(dirs, path, "protocol=dinov3", "bootstrap.resamples=20")]))
    assert rec["protocol_features"] == "user" and rec["encoder"] == "precomputed@dinov3"
    assert rec["n_train"] + rec["n_val"] == 300 and len(rec["search"]) == 45


def test_a_card_that_cannot_apply_fails_in_one_line_before_extraction(dirs, tmp_path) -> None:
    with pytest.raises(ProbeError, match=r"protocol=dinov2 fixes encoder.feature=.*encoder=pixels"):
        run(compose_cfg([*dirs, "protocol=dinov2"]))
    with pytest.raises(ProbeError, match=r"protocol=unicom defines eval=linear only.*eval=knn"):
        run(compose_cfg([*dirs, "protocol=unicom", "eval=knn"]))
    assert not (tmp_path / "cache").exists()


def test_a_card_on_an_encoder_without_a_class_token_names_itself(dirs, tmp_path, tiny) -> None:
    fake = fakes.make("imagefolder", tmp_path / "data")
    over = [
        *dirs,
        "encoder=siglip_so400m",
        f"encoder.model={tiny['siglip_vision_model']}",
        "encoder.width=32",
        "dataset=imagefolder",
        *fake.overrides,
        "protocol=dinov2",
    ]
    with pytest.raises(
        ProbeError,
        match=r"^protocol=dinov2 fixes encoder.feature=cls .*: "
        r"encoder.feature=cls is not available for .*it can give: ",
    ):
        run(compose_cfg(over))


def test_an_unknown_card_lists_the_known_ones(dirs, tmp_path) -> None:
    proc = run_cli([*dirs, "protocol=dinov9"], cwd=tmp_path)
    assert proc.returncode != 0
    # Hydra's own message: the missing option, then the group's options one per line
    assert "protocol/dinov9" in proc.stderr and all(c in proc.stderr for c in CARDS)


def test_a_per_class_val_rule_refuses_multi_label_rows() -> None:
    feats = split_feats(val=False)
    X, y = feats["train"]
    feats["train"] = (X, np.eye(3, dtype=np.int64)[y])  # N x K flags, as VOC 2007's
    with pytest.raises(ProbeError, match="blobs: the per-class val rule .* protocol=clip"):
        rules("dinov3").splits(_facts(False), feats)
