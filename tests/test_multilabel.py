"""VOC 2007 and CUB-200-2011 (issue 25): the devkit's 11-point mAP against a transcription of
the devkit itself, its bootstrap, one-vs-rest fits against scikit-learn's binary logistic
regression, the C search strategies, the labels' layout in the feature cache, the refusals
that keep a multi-label dataset away from single-label metrics, and both datasets end to end
through `python -m probe` on tiny fakes in their real layouts (tests/fakes_custom.py)."""

from __future__ import annotations

import json
from pathlib import Path

import fakes
import numpy as np
import pytest
from conftest import compose_cfg, config_names, run_cli

from probe.core.errors import ProbeError
from probe.core.factory import make
from probe.evaluations import multilabel, search, voc_map
from probe.evaluations.metrics import score
from probe.run import run


def devkit_ap(out: np.ndarray, gt: np.ndarray) -> float:
    """VOCevalcls.m lines 36-54 (npinto/VOCdevkit b0890ec6, VOCcode/VOCevalcls.m), line for
    line. `out`: one class's confidences; `gt`: the class's flags (1, -1, 0 difficult)."""
    si = np.argsort(-out, kind="stable")  # [so,si]=sort(-out);  (MATLAB's sort is stable)
    tp = gt[si] > 0  # tp=gt(si)>0;
    fp = gt[si] < 0  # fp=gt(si)<0;
    fp = np.cumsum(fp)  # fp=cumsum(fp);
    tp = np.cumsum(tp)  # tp=cumsum(tp);
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = tp / np.sum(gt > 0)  # rec=tp/sum(gt>0);
        prec = tp / (fp + tp)  # prec=tp./(fp+tp);
    ap = 0.0  # ap=0;
    for t in [k / 10 for k in range(11)]:  # for t=0:0.1:1   (the values k/10)
        sel = prec[rec >= t]
        p = np.nanmax(sel) if sel.size else []  # p=max(prec(rec>=t));  (max skips NaN)
        if np.size(p) == 0:  # if isempty(p)
            p = 0  # p=0;
        ap = ap + p / 11  # ap=ap+p/11;
    return float(ap)


def fixed_scores() -> tuple[np.ndarray, np.ndarray]:
    """300 images x 8 classes: tied scores, difficult flags, a difficult image ranked first,
    a class whose recall lands exactly on 0.3, one without positives."""
    rng = np.random.default_rng(7)
    flags = rng.choice([1, -1, -1, -1, 0], size=(300, 8))
    scores = np.round(rng.normal(size=(300, 8)) + flags, 1)  # rounding makes ties
    scores[:, 1] = np.where(flags[:, 1] > 0, 2.0, 0.0)  # a tie block per group
    flags[:, 2], scores[:, 2] = -1, rng.normal(size=300)  # no positives: AP 0
    flags[:, 3] = -1
    flags[:10, 3] = 1  # 10 positives: recall steps of exactly 0.1
    scores[:, 3] = -np.arange(300.0)
    scores[[0, 1, 2, 10, 11, 3, 4, 5, 6, 7, 8, 9], 3] = 500 - np.arange(12)
    flags[0, 4], scores[0, 4] = 0, 100.0  # a difficult image ranked first: 0/0 precision
    return scores, flags


def test_map11_equals_the_devkit_transcription() -> None:
    # by hand: ranks +,-,+,-: recall .5 .5 1 1, precision 1 .5 2/3 .5; t <= .5: 1, t > .5: 2/3
    hand = voc_map.class_aps(np.array([[0.9], [0.8], [0.7], [0.6]]),
                             np.array([[1], [-1], [1], [-1]]))  # fmt: skip
    assert hand[0] == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-15)
    scores, flags = fixed_scores()
    want = [devkit_ap(scores[:, c], flags[:, c]) for c in range(8)]
    np.testing.assert_allclose(voc_map.class_aps(scores, flags), want, rtol=0, atol=1e-15)
    assert voc_map.mean_ap(scores, flags) == pytest.approx(np.mean(want) * 100, abs=1e-12)
    assert want[2] == 0.0 and 0 < min(want[3:5])


def test_bootstrap_resample_is_the_map_of_the_drawn_rows() -> None:
    scores, flags = fixed_scores()
    scores = scores + np.random.default_rng(1).normal(scale=1e-6, size=scores.shape)  # no ties
    maps = voc_map.resampled_maps(scores, flags, resamples=3, seed=5)
    rng = np.random.Generator(np.random.PCG64(5))
    for m in maps:
        rows = rng.integers(0, len(scores), len(scores))
        want = np.mean([devkit_ap(scores[rows, c], flags[rows, c]) for c in range(8)]) * 100
        assert m == pytest.approx(want, abs=1e-12)
    low, high = voc_map.map_ci(scores, flags, resamples=200, level=0.9, seed=0)
    assert low < voc_map.mean_ap(scores, flags) < high


@pytest.mark.parametrize("name", config_names("probe"))
def test_every_backend_fits_sklearns_binary_logistic_regression(name: str) -> None:
    """What each one-vs-rest column is: scikit-learn's binary LogisticRegression at C."""
    from sklearn.linear_model import LogisticRegression

    from probe.solvers.cuml import gpu_usable

    if name == "cuml" and not gpu_usable():
        pytest.skip("cuML needs a GPU")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=80) > 0.3).astype(np.int64)
    solver = make(compose_cfg([f"probe={name}", "probe.tol=1e-9"]).probe, device="cpu")
    for C in (0.01, 1.0, 30.0):
        ref = LogisticRegression(C=C, tol=1e-12, max_iter=10000).fit(X.astype(np.float64), y)
        fit = solver.fit(X, y, C=C, num_classes=2)
        W, b = multilabel.head([fit])
        np.testing.assert_allclose(W[0], ref.coef_[0], rtol=1e-5, atol=1e-7)
        assert b[0] == pytest.approx(ref.intercept_[0], rel=1e-5, abs=1e-7)
        np.testing.assert_allclose(multilabel.decision([fit], X)[:, 0],
                                   ref.decision_function(X), rtol=1e-4, atol=1e-5)  # fmt: skip


def test_search_strategies_prefer_the_smaller_c_on_a_plateau() -> None:
    table = {k: -(abs(k - 40) // 3) for k in range(97)}  # a plateau: 38 to 42 tie
    asked: list[list[int]] = []

    def score_at(points: list[int]) -> dict[int, float]:
        asked.append(points)
        return {k: table[k] for k in points}

    # 32 (ties 48), 40 (step 8), 40, 38 (ties 42), 38 (ties 39): the smaller index each time
    assert search.clip_binary().choose(score_at) == 38
    assert asked[0] == list(range(0, 97, 16))
    assert search.Sweep(grid=search.clip_grid()).choose(score_at) == 38


def test_single_label_cache_entries_are_as_before(tmp_path: Path) -> None:
    """digits' entries: the same directories (fingerprints) and meta.json as before the
    labels block existed (the values main wrote at 4192690), and no `labels` block."""
    dirs = [f"cache_dir={tmp_path / 'c'}", f"results_dir={tmp_path / 'r'}", "stage=extract"]
    run(compose_cfg([*dirs, "device=cpu"]))
    before = {  # entry: (labels.npy SHA-256, content_hash)
        "test-fdcb3aca1e47a3c6": (
            "b20bec06591fbe35f72b9e5d8148114f1837d49d7fe0dda55877e7042b39c915",
            "2a23e7b3b25f38dd795406daf1b60022311436fb6eaf24cdf5b76d025e7602a3",
        ),
        "train-12b353c6679032c9": (
            "cc92a75695fed0b6c1c02bd412a5b998851369b91f3f5b0aa64c16eddb44bd2e",
            "e4334d676fb49082205feaa7e8d44283794075bd84f3e7966944727ded631d88",
        ),
    }
    entries = sorted((tmp_path / "c" / "pixels" / "digits").iterdir())
    assert [e.name for e in entries if not e.name.startswith(".")] == sorted(before)
    for name, (labels_sha, content) in before.items():
        meta = json.loads((tmp_path / "c" / "pixels" / "digits" / name / "meta.json").read_text())
        assert set(meta) == {"n", "dim", "dtype", "content_hash", "seconds", "images_per_second",
                             "checksum", "dataset", "libraries", "fingerprint"}  # fmt: skip
        assert (meta["checksum"]["labels"], meta["content_hash"]) == (labels_sha, content)


def test_multilabel_is_refused_by_single_label_evaluations(tmp_path: Path) -> None:
    dirs = [f"cache_dir={tmp_path / 'c'}", f"results_dir={tmp_path / 'r'}",
            f"data_root={tmp_path / 'nowhere'}"]  # fmt: skip
    for evaluation in ("knn", "fewshot"):
        with pytest.raises(ProbeError) as err:
            run(compose_cfg([*dirs, "dataset=voc2007", f"eval={evaluation}"]))
        msg = str(err.value)
        assert msg.startswith(f"dataset voc2007 is multi-label (metric map11): eval={evaluation}")
        assert "use eval=linear" in msg and "\n" not in msg
    assert not (tmp_path / "c").exists()  # refused before any extraction
    with pytest.raises(ProbeError, match=r"metric=top1 with labels of shape \(3, 20\).*map11"):
        score(np.zeros(3), np.zeros((3, 20)), "top1")
    with pytest.raises(ProbeError, match="metric=map11 with labels of shape"):
        score(np.zeros(3), np.zeros(3), "map11")


def test_wrong_metric_carve_and_missing_lists_say_what_to_do(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fakes.make("voc2007", data)
    fakes.make("cub200", data)
    with pytest.raises(ProbeError, match=r"dataset cub200: dataset.metric=map11 scores multi"):
        make(compose_cfg(["dataset=cub200", f"data_root={data}", "dataset.metric=map11"]).dataset)
    with pytest.raises(ProbeError, match=r"dataset cub200: set dataset.path \(or dataset.hf"):
        make(compose_cfg(["dataset=cub200", "dataset.source=hf"]).dataset)  # no mirror vouched
    with pytest.raises(ProbeError, match=r"dataset voc2007: the train labels are multi-label"):
        make(compose_cfg(["dataset=voc2007", f"data_root={data}", "dataset.metric=top1"]).dataset)
    voc = make(compose_cfg(["dataset=voc2007", f"data_root={data}", "dataset.val.source=carve"])
               .dataset)  # fmt: skip
    from probe.evaluations.splits import protocol_splits

    feats = {s: (np.zeros((len(sp), 2)), sp.labels) for s, sp in voc.splits.items()}
    with pytest.raises(ProbeError, match=r"needs one label per image.*val.source=official"):
        protocol_splits(voc, feats)
    lists = data / "voc2007" / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    (lists / "sheep_val.txt").unlink()
    with pytest.raises(ProbeError) as err:
        make(compose_cfg(["dataset=voc2007", f"data_root={data}"]).dataset)
    assert str(lists / "sheep_val.txt") in str(err.value) and "VOCtest_06-Nov-2007.tar" in str(
        err.value
    )


def test_both_datasets_end_to_end_through_the_cli(tmp_path: Path) -> None:
    """One `python -m probe -m` over voc2007 and cub200, then voc2007 again from the cache."""
    data = tmp_path / "data"
    fakes.make("voc2007", data)
    fakes.make("cub200", data)
    dirs = [f"data_root={data}", f"cache_dir={tmp_path / 'c'}", f"results_dir={tmp_path / 'r'}",
            "bootstrap.resamples=50", "num_workers=0"]  # fmt: skip
    proc = run_cli(["-m", "encoder=pixels", "dataset=voc2007,cub200", *dirs], cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for name, metric, sizes in (("voc2007", "map11", (6, 6, 6)), ("cub200", "top1", (7, 2, 6))):
        rec = json.loads((tmp_path / "r" / "pixels" / f"{name}.json").read_text())
        assert rec["metric"] == metric and (rec["n_train"], rec["n_val"], rec["n_test"]) == sizes
        assert rec["score_ci"][0] <= rec["score"] <= rec["score_ci"][1]
    voc = json.loads((tmp_path / "r" / "pixels" / "voc2007.json").read_text())
    assert len(voc["class_ap"]) == 20 and voc["top5"] is None and len(voc["search"]) >= 7
    assert voc["score"] == pytest.approx(np.mean(voc["class_ap"]))
    with np.load(tmp_path / "r" / "pixels" / "voc2007.npz") as head:
        assert head["coef"].shape == (20, 192) and head["test_score"].shape == (6, 20)
        assert voc_map.mean_ap(head["test_score"], head["test_label"]) == voc["score"]
    for meta in (tmp_path / "c" / "pixels" / "voc2007").glob("*/meta.json"):
        assert json.loads(meta.read_text())["labels"] == {"shape": [6, 20], "dtype": "int64"}
    again = run(compose_cfg([*dirs, "dataset=voc2007", "stage=probe"]))  # labels read back
    assert again["score"] == voc["score"] and again["C"] == voc["C"]
