"""`python -m probe.bench solvers`: its problems and its per-backend columns (passes over X,
iterations, time by precision), on tiny problems; no timing is asserted."""

from __future__ import annotations

import numpy as np
import pytest

from probe.bench import counts, problems
from probe.bench.solvers import run_backend, summarise, table


def tiny() -> problems.Problem:
    return problems.gaussians(name="tiny", n_train=600, n_test=200, dim=16, num_classes=5,
                              separation=3.0, radius=4.0)  # fmt: skip


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    prob = tiny()
    out = [run_backend(b, "cpu", prob) for b in ("torch", "sklearn")]
    return summarise(prob, out)


def test_columns_count_what_each_backend_did(rows) -> None:
    torch_row, sk_row = rows
    for r in rows:
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
    assert set(problems.PROBLEMS) == {"digits", "cifar100", "strong", "imagenet"}
    with pytest.raises(ValueError):
        problems.build("mnist", gpu=False)
