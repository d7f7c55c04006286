"""Intervals in the paper tables: score +- half-width, published within it, paired differences.

Three real digits runs share one test split: `px_a` and its exact twin `px_c` (the same
features under another name: identical predictions), and `px_b` on 4x4 thumbnails (other
predictions). A published CSV puts px_a's score inside its interval and px_b's outside.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import compose_cfg
from test_table import md_row, table_cfg

from probe.report.tables.write import make_table
from probe.run import run

RUNS = {"px_a": [], "px_b": ["encoder.size=4"], "px_c": []}
# one worker runs the module (pytest -n): its two fixtures' seven digits runs, once
pytestmark = pytest.mark.xdist_group("table_stats")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stats")
    records = {}
    for name, extra in RUNS.items():
        args = [f"cache_dir={tmp / 'cache'}", f"results_dir={tmp / 'results'}",
                f"encoder.name={name}", *extra]  # fmt: skip
        records[name] = run(compose_cfg(args))
    pub = tmp / "published"
    pub.mkdir()
    rows = [
        f"px_a,digits,top1,{records['px_a']['score']:.2f},test,",
        "px_b,digits,top1,50.00,test,",
        f"px_c,digits,top1,{records['px_c']['score']:.2f},test,",
    ]
    (pub / "px.csv").write_text("encoder,dataset,metric,score,source,note\n" + "\n".join(rows))
    overrides = [f"results_dir={tmp / 'results'}", f"published_dir={pub}", "table.name=px",
                 "table.published=px.csv", "table.grid=null", "table.rows.values=[digits]",
                 "table.columns.values=[px_a,px_b,px_c]", "table.labels={}"]  # fmt: skip
    return records, make_table(table_cfg("mlcd_linear_probe", overrides))


def test_cells_show_the_interval_and_whether_it_holds_the_published_number(tables) -> None:
    records, (table, paths, md) = tables
    low, high = records["px_a"]["score_ci"]
    row = md_row(md, "digits")
    # bold: the best of the row; the dagger: a renamed encoder is not a plain protocol run
    assert row[1].replace("*", "").rstrip("\u2020") == (
        f"{records['px_a']['score']:.2f} ± {(high - low) / 2:.2f}"
    )
    assert row[4] == "yes" and row[8] == "no"  # px_a inside its interval, px_b's 50 outside
    assert "px_a: published within our 95% interval in 1 of 1 cells." in md
    assert "px_b: published within our 95% interval in 0 of 1 cells." in md


def test_paired_differences_from_the_saved_predictions(tables) -> None:
    records, (table, paths, md) = tables
    by_b = {p.b: p for p in table.pairs}
    twin = by_b["px_c"]
    assert twin.interval == [0.0, 0.0] and not twin.significant and twin.diff == 0.0
    other = by_b["px_b"]
    assert other.diff == pytest.approx(records["px_a"]["score"] - records["px_b"]["score"])
    assert other.interval[0] <= other.diff <= other.interval[1]
    assert other.significant == (other.interval[0] > 0 or other.interval[1] < 0)
    row = md_row(md, "digits")
    assert row[-1] == "+0.00 (n.s.)"
    assert "- px_a - px_c on digits: +0.00 [+0.00, +0.00], n.s." in md
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert rows[0]["px_a_minus_px_c_significant"] == "no"
    assert float(rows[0]["px_a_low"]) == pytest.approx(records["px_a"]["score_ci"][0], abs=0.006)
    assert rows[0]["px_b_published_within_ci"] == "no" and rows[0]["px_b_ci_level"] == "0.95"
    assert r"$\pm$" in paths["tex"].read_text()


def test_results_on_other_test_images_or_without_heads_are_not_paired(tables, tmp_path) -> None:
    records, _ = tables
    from probe.report.tables.data import Result
    from probe.report.tables.stats import pair

    def result(name, **change):
        rec = {**json.loads(open(records[name]["path"]).read()), **change}
        return Result(name, "digits", "top1", rec["score"], records[name]["path"], rec)

    a = result("px_a")
    assert "test_content_hash" in pair(a, result("px_b", test_content_hash="x"), metric="top1").why
    gone = result("px_b", head={"path": "/nowhere.npz", "sha256": "0"})
    gone.path = tmp_path / "moved" / "digits.json"
    assert "no saved test predictions" in pair(a, gone, metric="top1").why
    changed = result("px_b", head={**records["px_b"]["head"], "sha256": "f" * 64})
    assert "SHA-256 differs" in pair(a, changed, metric="top1").why
    assert np.isfinite(pair(a, result("px_b"), metric="mean_per_class").interval).all()


def plain(cells: list[str]) -> list[str]:
    """Cells without the dagger (these runs use non-default eval settings: daggered)."""
    return [c.removesuffix("\u2020") for c in cells]


@pytest.fixture(scope="module")
def eval_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evals")
    records = {}
    for name, extra in (("px_a", []), ("px_b", ["encoder.size=4"])):
        base = [f"cache_dir={tmp / 'cache'}", f"results_dir={tmp / 'results'}",
                f"encoder.name={name}", *extra]  # fmt: skip
        records[(name, "fewshot")] = run(compose_cfg([*base, "eval=fewshot", "eval.shots=[1,2]",
                                                      "eval.seeds=2"]))  # fmt: skip
        records[(name, "knn")] = run(compose_cfg([*base, "eval=knn", "eval.k=[5,20]"]))
    return tmp, records


def test_fewshot_table_and_plot(eval_results) -> None:
    tmp, records = eval_results
    table, paths, md = make_table(table_cfg("fewshot", [f"results_dir={tmp / 'results'}"]))
    assert table.encoders == ["px_a", "px_b"] and table.datasets == ["digits"]
    by_k = records[("px_b", "fewshot")]["by_k"]
    assert plain(md_row(md, "px_b")[1:]) == [f"{by_k[k]['mean']:.2f} ± {by_k[k]['std']:.2f}"
                                      for k in ("1", "2")]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert len(rows) == 4 and {r["k"] for r in rows} == {"1", "2"}
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_knn_table_at_the_k_chosen_on_val_and_at_k20(eval_results) -> None:
    tmp, records = eval_results
    _, paths, md = make_table(table_cfg("knn", [f"results_dir={tmp / 'results'}"]))
    rec = records[("px_a", "knn")]
    half = (rec["score_ci"][1] - rec["score_ci"][0]) / 2
    row = plain(md_row(md, "digits"))
    assert row[1] == f"{rec['score']:.2f} ± {half:.2f} (k={rec['k']})"
    assert row[2] == f"{rec['test_score_by_k']['20']:.2f}"
    assert "px_b k chosen on val" in md and "best k" not in md
    assert len(paths["csv"].read_text().splitlines()) == 3


def test_knn_table_refuses_a_result_whose_k_was_chosen_on_test(eval_results, tmp_path) -> None:
    """A k-NN result in the old format (`by_k`, `best_k` by test score) is listed as
    unreadable with the command that remakes it, never shown as a k chosen on val."""
    tmp, records = eval_results
    old = {key: v for key, v in records[("px_a", "knn")].items()
           if key not in ("k", "val_score_by_k", "test_score_by_k")}  # fmt: skip
    old.update(by_k={"5": {"score": 99.0}}, best_k=5)
    (tmp_path / "px_old").mkdir()
    (tmp_path / "px_old" / "digits.knn.json").write_text(json.dumps({**old, "encoder": "px_old"}))
    _, _, md = make_table(table_cfg("knn", [f"results_dir={tmp_path}"]))
    assert "99.00" not in md and "encoder=px_old dataset=digits eval=knn" in md


def test_fewshot_table_prints_no_std_for_one_seed(tmp_path) -> None:
    base = [f"cache_dir={tmp_path / 'cache'}", f"results_dir={tmp_path / 'results'}"]
    rec = run(compose_cfg([*base, "eval=fewshot", "eval.shots=[1]", "eval.seeds=1"]))
    assert rec["by_k"]["1"]["std"] is None
    _, paths, md = make_table(table_cfg("fewshot", [f"results_dir={tmp_path / 'results'}"]))
    assert plain(md_row(md, "pixels")[1:]) == [f"{rec['by_k']['1']['mean']:.2f}"]
    assert next(csv.DictReader(io.StringIO(paths["csv"].read_text())))["std"] == ""


def test_eval_tables_carry_the_dagger_and_refuse_mixed_levels(tmp_path) -> None:
    """A k-NN run with a non-default eval key is daggered with the key; an encoder whose
    k-NN results were made at two interval levels is refused in one line."""
    from probe.core.errors import ProbeError

    base = [f"cache_dir={tmp_path / 'cache'}", f"results_dir={tmp_path / 'results'}"]
    run(compose_cfg([*base, "eval=knn", "eval.k=[5,20]"]))
    _, _, md = make_table(table_cfg("knn", [f"results_dir={tmp_path / 'results'}"]))
    assert "eval.k=[5, 20] (configs/eval/knn.yaml: [10, 20, 100, 200])" in md
    assert "\u2020" in md_row(md, "digits")[1] and "its 95% interval" in md
    run(compose_cfg([*base, "eval=knn", "eval.k=[5,20]", "dataset.name=digits2",
                     "bootstrap.level=0.5"]))  # fmt: skip
    with pytest.raises(ProbeError, match="mixes interval levels") as err:
        make_table(table_cfg("knn", [f"results_dir={tmp_path / 'results'}"]))
    assert "\n" not in str(err.value)
