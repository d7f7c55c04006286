"""`python -m probe.bench solvers`: its problems and its per-backend columns (passes over X,
iterations, time by precision), on tiny problems; no timing is asserted."""

from __future__ import annotations

import numpy as np
import pytest

from probe.bench import counts, peers, problems
from probe.bench.solver_report import table
from probe.bench.solvers import _run_or_na, run_backend, summarise
from probe.core.errors import ProbeError


def tiny() -> problems.Problem:
    return problems.gaussians(name="tiny", n_train=600, n_test=200, dim=16, num_classes=5,
                              separation=3.0, radius=4.0)  # fmt: skip


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    prob = tiny()
    out = [run_backend(b, "cpu", prob) for b in ("torch", "sklearn", "sklearnex", "cyanure")]
    return summarise(prob, out)


def test_columns_count_what_each_backend_did(rows) -> None:
    torch_row, sk_row = rows[:2]
    for r in rows[:3]:
        n_fits = len(r["search"]) + 1
        assert r["iterations"] == sum(x["iterations"] for x in r["search"]) + (
            r["final"].iterations
        )
        # every iteration takes at least one pass; every fit at least its first evaluation
        assert r["passes"] >= r["iterations"] + n_fits - sum(
            x["iterations"] == 0 for x in r["search"]
        )
        assert 0.0 <= r["f32_share"] and 0.0 < r["f64_share"]
        assert r["f32_share"] + r["f64_share"] <= 1.0
    # torch: float32 passes do the work, float64 certifies every fit that met the rule
    kinds = torch_row["passes_by_kind"]
    assert kinds["float32"] > 0 and kinds["certificate"] >= 1
    assert torch_row["passes"] == sum(kinds.values())
    # sklearn: our count of scikit-learn's loss calls is scipy's own nfev; all float64
    assert sk_row["passes"] == sk_row["passes_by_kind"]["scipy_nfev"] > 0
    assert sk_row["f32_share"] == 0.0
    text = table([{"problem": "tiny", "shape": "600 x 16 x 5", "rows": rows}])
    assert "| passes | iterations | f32 time | f64 time |" in text
    assert f"| {torch_row['passes']:,} | {torch_row['iterations']:,} |" in text


def test_peers_fit_the_same_objective_beside_torch(rows) -> None:
    torch_row, sk_row, skx_row, cy_row = rows
    # scikit-learn-intelex ran its own loss (not a silent fallback): scipy's count is ours
    assert skx_row["passes"] == skx_row["passes_by_kind"]["scipy_nfev"] > 0
    assert skx_row["f64_share"] > 0.0
    # cyanure: its epochs are its passes and its iterations
    assert cy_row["passes"] == cy_row["iterations"] == cy_row["passes_by_kind"]["epochs"] > 0
    assert cy_row["f32_share"] is None and "epochs" in cy_row["why_na"]
    for peer in (skx_row, cy_row):
        # the same objective as torch's, C for C (a wrong scaling of C is off by a factor;
        # the stopping rules differ: scipy's relative-decrease stop, cyanure's duality gap)
        for C, value in peer["objectives"].items():
            if C in torch_row["objectives"]:
                assert value == pytest.approx(torch_row["objectives"][C], rel=0.05)
        vs = peer["torch_vs"]
        assert vs["common_C"] >= 5 and vs["max_rel_diff"] is not None
        assert peer["torch_speedup"] == pytest.approx(peer["seconds"] / torch_row["seconds"])
    assert "torch_vs" not in torch_row
    text = table([{"problem": "tiny", "shape": "600 x 16 x 5", "rows": rows}])
    assert "| speedup | torch x |" in text
    assert f"| cyanure | cpu | {cy_row['seconds']:.1f} |" in text


def test_cyanure_binary_weights_read_as_scikit_learn_reads_them() -> None:
    """cyanure's binary fit (labels -1/+1, one weight vector) mapped to scikit-learn's
    binomial form: the same objective and the same predictions as scikit-learn's fit."""
    from probe.solvers.sklearn import SklearnSolver

    prob = problems.gaussians(name="two", n_train=400, n_test=10, dim=8, num_classes=2,
                              separation=1.0, radius=2.0)  # fmt: skip
    y = prob.y + 3  # labels that are not 0 and 1
    ours = peers.CyanureSolver(tol=1e-12).fit(prob.X, y, C=1.0, num_classes=5)
    ref = SklearnSolver().fit(prob.X, y, C=1.0, num_classes=5)
    assert ours.objective == pytest.approx(ref.objective, rel=1e-7)
    np.testing.assert_array_equal(peers.CyanureSolver().predict(ours, prob.X),
                                  SklearnSolver().predict(ref, prob.X))  # fmt: skip


def test_a_peer_that_cannot_run_prints_na_and_the_install(monkeypatch) -> None:
    real = peers.importlib.util.find_spec
    monkeypatch.setattr(peers.importlib.util, "find_spec",
                        lambda name: None if name == "cyanure" else real(name))  # fmt: skip
    prob = tiny()
    rows = [_run_or_na(b, "cpu", prob) for b in ("torch", "cyanure", "cuml")]
    rows = summarise(prob, rows)
    text = table([{"problem": "tiny", "shape": prob.shape, "rows": rows}])
    assert '| cyanure | n/a: not installed: pip install -e ".[bench]" (cyanure) |' in text
    assert "| cuml | n/a: no CUDA GPU here" in text
    assert all(line.count("|") == text.splitlines()[0].count("|") for line in text.splitlines())


def test_a_sklearnex_that_fell_back_is_refused(monkeypatch) -> None:
    """Were scikit-learn-intelex to run stock scikit-learn, its row would be a second
    scikit-learn row under another name: the bench stops instead."""
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setattr(peers.SklearnexSolver, "estimator", lambda self: LogisticRegression)
    with pytest.raises(ProbeError, match="fell back to stock scikit-learn"):
        run_backend("sklearnex", "cpu", tiny())


def test_sklearn_counting_leaves_scikit_learn_as_it_was() -> None:
    from sklearn.linear_model import LogisticRegression, _logistic

    real = _logistic.optimize
    X, y = tiny().X[:200].astype(np.float64), tiny().y[:200]
    with counts.sklearn_counting() as tally:
        model = LogisticRegression(C=1.0, max_iter=1000).fit(X, y)
    assert _logistic.optimize is real
    plain = LogisticRegression(C=1.0, max_iter=1000).fit(X, y)
    np.testing.assert_array_equal(model.coef_, plain.coef_)
    assert tally["passes"] == tally["nfev"] >= int(model.n_iter_[0])


def test_quick_and_full_problem_shapes() -> None:
    quick = problems.build("imagenet", gpu=False, quick=True)
    assert (len(quick.y), quick.X.shape[1], quick.num_classes) == (8000, 256, 1000)
    strong = problems.build("strong", gpu=False, quick=True, max_train=1000)
    assert strong.X.shape == (1000, 256)
    norms = np.linalg.norm(strong.X, axis=1)
    np.testing.assert_allclose(norms, problems.SHAPES["strong"][4], rtol=1e-5)
    assert set(problems.PROBLEMS) == {"digits", "cifar100", "strong", "fine",
                                      "imagenet-small", "imagenet"}  # fmt: skip
    fine = problems.build("fine", gpu=False, max_train=700)
    assert (fine.X.shape, fine.num_classes, len(fine.yt)) == ((700, 768), 100, 3333)
    with pytest.raises(ValueError):
        problems.build("mnist", gpu=False)
