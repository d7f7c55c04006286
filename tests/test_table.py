"""Tables from hand-written result JSONs: values, bold, dashes, refusals, duplicates, files."""

from __future__ import annotations

import csv
import functools
import itertools
import json
import re
from pathlib import Path

import pytest
from conftest import CONFIGS, REPO, config_names
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from resultkit import write_result

from probe.core.errors import ProbeError
from probe.core.paths import published_dir
from probe.datasets.base import METRICS
from probe.report.tables.data import Layout, protocol_metric, published_for, read_published
from probe.report.tables.write import make_table

PUBLISHED_DIR = published_dir()
MLCD = read_published(PUBLISHED_DIR / "mlcd_linear_probe.csv")


def table_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="probe_table", overrides=[f"table={name}", *overrides])


def write(path: Path, record: dict | str) -> Path:
    """A result file: text as given, a record completed to a done result (`resultkit`)."""
    if not isinstance(record, str):
        return write_result(path, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record)
    return path


@functools.cache
def plain_config(encoder: str, probe: str = "torch") -> str:
    """The config block of a plain protocol run: the shipped configs, composed (as JSON)."""
    from conftest import compose_cfg
    from omegaconf import OmegaConf

    cfg = compose_cfg([f"encoder={encoder}", f"probe={probe}"])
    return json.dumps(OmegaConf.to_container(cfg, resolve=True))


def result(encoder: str, dataset: str, score: float, metric: str = "top1", **fields) -> dict:
    """A result as a plain protocol run on the CPU leaves it (the fields the table reads)."""
    return {
        "encoder": encoder, "dataset": dataset, "metric": metric, "score": score, "C": 1.0,
        "converged": True, "search": [{"C": 1.0, "converged": True}],
        "final_fit": {"converged": True}, "git": "0123abc", "backend": "torch",
        "device": "cpu", "dtype": "float32", "config": json.loads(plain_config(encoder)),
        **fields,
    }  # fmt: skip


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results dir as runs leave it, plus the clutter the table must step over."""
    root = tmp_path / "results"
    write(root / "mlcd_l14" / "food101.json", result("mlcd_l14", "food101", 96.456))
    write(root / "clip_l14" / "food101.json", result("clip_l14", "food101", 97.0))
    write(root / "mlcd_l14" / "cifar10.json", result("mlcd_l14", "cifar10", 98.0))
    write(root / "clip_l14" / "cifar10.json", result("clip_l14", "cifar10", 98.0))  # a tie
    write(root / "mlcd_l14" / "pets.json", result("mlcd_l14", "pets", 90.0, metric="top1"))
    write(root / "clip_l14" / "pets.json", result("clip_l14", "pets", 91.0, "mean_per_class"))
    write(root / "clip_l14" / "dtd.json", '{"encoder": "clip_l14", "dataset": "dt')  # truncated
    write(root / "clip_l14" / "notes.json", json.dumps({"comment": "not a result"}))
    write(root / "logs" / "stale.json", result("mlcd_l14", "dtd", 1.0))  # would be duplicates
    write(root / "tables" / "stale.json", result("mlcd_l14", "dtd", 1.0))
    write(root / "pixels" / "digits.json", result("pixels", "digits", 95.0))  # not in the table
    return root


def md_row(markdown: str, label: str) -> list[str]:
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_linear_probe_table_values_bold_dashes(results: Path) -> None:
    table, paths, md = make_table(
        table_cfg("mlcd_linear_probe", [f"results_dir={results}", "ci=false"])
    )
    pub = {k: f"{v.score:.2f}" for k, v in MLCD.items()}
    diff = f"{96.456 - MLCD[('mlcd_l14', 'food101')].score:+.2f}"
    # MLCD ours, published, diff | CLIP ours, published, diff; bold: best of ours / of published
    best_pub = max(("mlcd_l14", "clip_l14"), key=lambda e: MLCD[(e, "food101")].score)
    food = md_row(md, "Food101")
    assert [food[1], food[2].strip("*"), food[3]] == ["96.46", pub[("mlcd_l14", "food101")], diff]
    assert food[4] == "**97.00**" and food[5].strip("*") == pub[("clip_l14", "food101")]
    bold_pub, plain_pub = (2, 5) if best_pub == "mlcd_l14" else (5, 2)
    assert food[bold_pub].startswith("**") and not food[plain_pub].startswith("**")
    assert md_row(md, "CIFAR-10")[1] == md_row(md, "CIFAR-10")[4] == "**98.00**"  # both tie
    assert md_row(md, "SUN397")[1] == md_row(md, "SUN397")[4] == "-"
    # wrong metric refused (pets is mean per class), the right one kept
    pets = md_row(md, "Oxford-IIIT Pets")
    assert pets[1] == "-" and pets[4] == "91.00"
    assert re.search(r"mlcd_l14/pets\.json: scored with top1, .* pets is mean_per_class", md)
    # missing cells listed with the command that fills each
    assert "- clip_l14 on sun397: `python -m probe encoder=clip_l14 dataset=sun397 " in md
    assert f"results_dir={results}`" in md
    assert "python -m probe.grid grid=mlcd_linear_probe" in md
    assert len(table.missing) == 24 - 5
    # the truncated file is listed, not fatal; clutter outside results is ignored
    assert "clip_l14/dtd.json: not readable JSON" in md and "notes.json" not in md
    assert md_row(md, "DTD")[1] == "-" and "stale.json" not in md
    assert len(table.sources) == 2 and all(s in md for s in table.sources)
    assert paths["md"].read_text() == md


def test_csv_tex_png_written(results: Path) -> None:
    _, paths, _ = make_table(table_cfg("mlcd_linear_probe", [f"results_dir={results}", "ci=false"]))
    assert set(paths) == {"md", "csv", "tex", "png"}
    assert all(p.parent == results / "tables" for p in paths.values())
    rows = {r["dataset"]: r for r in csv.DictReader(paths["csv"].open())}
    assert list(rows)[:3] == ["food101", "cifar10", "cifar100"] and len(rows) == 12
    assert rows["food101"]["mlcd_l14"] == "96.46" and rows["sun397"]["mlcd_l14"] == ""
    assert float(rows["imagenet"]["mlcd_l14_published"]) == MLCD[("mlcd_l14", "imagenet")].score
    tex = paths["tex"].read_text()
    assert r"Food101 & 96.46 & " in tex and r"\textbf{97.00}" in tex
    assert r"SUN397 & -- & " in tex and r"\begin{tabular}{lrrrrrr}" in tex
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(results.glob("tables/.*.tmp"))


def test_duplicates_across_results_dirs_name_both_files(results: Path, tmp_path: Path) -> None:
    other = tmp_path / "more"
    dup = write(other / "clip_l14" / "food101.json", result("clip_l14", "food101", 50.0))
    overrides = [f"results_dir={results}", f"extra_results_dirs=[{other}]"]
    cfg = table_cfg("mlcd_linear_probe", overrides)
    with pytest.raises(ProbeError, match="two results for clip_l14 on food101") as err:
        make_table(cfg)
    message = str(err.value)
    assert str(results / "clip_l14" / "food101.json") in message and str(dup) in message


def test_a_copy_under_another_folder_is_refused_not_mixed_in(results: Path) -> None:
    """A file under another folder whose record claims a cell (a copy or a move) is not the
    result of that folder's encoder: listed with its fix, never shown (issue 24)."""
    write(results / "mlcd_l14_copy" / "food101.json", result("mlcd_l14", "food101", 1.0))
    _, _, md = make_table(table_cfg("mlcd_linear_probe", [f"results_dir={results}"]))
    assert md_row(md, "Food101")[1].startswith("96.46")
    assert "mlcd_l14_copy/food101.json: its record is mlcd_l14 on food101 (linear)" in md


def test_imagenet_table_keeps_its_own_published_value(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root / "mlcd_l14" / "imagenet.json", result("mlcd_l14", "imagenet", 86.2))
    write(root / "mlcd_b32" / "imagenet.json", result("mlcd_b32", "imagenet", 79.0))
    by_size = read_published(PUBLISHED_DIR / "mlcd_imagenet.csv")
    _, paths, md = make_table(table_cfg("mlcd_imagenet", [f"results_dir={root}", "ci=false"]))
    l14 = md_row(md, "MLCD ViT-L/14-336")
    assert l14[1:] == ["**86.20**", f"{by_size[('mlcd_l14', 'imagenet')].score:.2f}", "-0.10"]
    assert md_row(md, "MLCD ViT-bigG/14-224")[1] == "-"
    assert by_size[("mlcd_l14", "imagenet")].score != MLCD[("mlcd_l14", "imagenet")].score
    assert "both kept as published" in md
    assert paths["png"].stat().st_size > 0


def _table_kind(name: str) -> str:
    return OmegaConf.load(CONFIGS / "table" / f"{name}.yaml").get("kind", "paper")


PAPER_TABLES = [n for n in config_names("table") if _table_kind(n) == "paper"]
EVAL_TABLES = [n for n in config_names("table") if _table_kind(n) != "paper"]


@pytest.mark.parametrize("name", EVAL_TABLES)
def test_eval_table_configs_build_on_an_empty_results_dir(name: str, tmp_path: Path) -> None:
    table, paths, md = make_table(table_cfg(name, [f"results_dir={tmp_path}"]))
    assert f"No {table.kind} results found" in md and paths["csv"].read_text().count("\n") == 1


@pytest.mark.parametrize("name", PAPER_TABLES)
def test_table_config_cells_have_published_numbers(name: str) -> None:
    layout = Layout.from_cfg(table_cfg(name, []).table)
    published = read_published(PUBLISHED_DIR / layout.published)
    cells = [layout.cell_key(r, c) for r in layout.rows for c in layout.cols]
    assert all(published_for(published, *k).source.strip() for k in cells)
    for key in cells:  # the CSV's metric agrees with the dataset config, where one exists
        from_config = protocol_metric(key[1], {})
        if from_config is None:  # voc2007, cub200: their configs land from another branch
            continue
        assert published_for(published, *key).metric == from_config
        assert from_config in METRICS
    assert layout.grid in config_names("grid")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        grid = compose(config_name="probe_grid", overrides=[f"grid={layout.grid}"]).grid
    # a column names its result; the grid runs the encoder config it tags (`dinov2_l14@cls`:
    # dinov2_l14, whose card fixes the feature), under the table's protocol
    runs = set(itertools.product(grid.encoders, grid.datasets))
    assert {(e.split("@")[0], d) for e, d in cells} <= runs
    card = [] if layout.protocol == "clip" else [f"protocol={layout.protocol}"]
    assert [o for o in grid.overrides if o.startswith("protocol=")] == card


def test_published_csvs_name_their_source() -> None:
    for path in sorted(PUBLISHED_DIR.glob("*.csv")):
        assert path.read_text().startswith("# "), path
        assert all(p.source for p in read_published(path).values())


def test_table_cli_prints_markdown_and_fails_cleanly(results: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    def cli(*args: str):
        return subprocess.run(
            [sys.executable, "-m", "probe.table", *args], capture_output=True, text=True,
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300,
        )  # fmt: skip

    ok = cli(f"results_dir={results}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "| Food101 | 96.46 |" in ok.stdout and "cells filled" in ok.stdout
    assert (results / "tables" / "mlcd_linear_probe.png").stat().st_size > 0
    write(tmp_path / "more" / "mlcd_l14" / "food101.json", result("mlcd_l14", "food101", 2.0))
    bad = cli(f"results_dir={results}", f"extra_results_dirs=[{tmp_path / 'more'}]")
    assert bad.returncode == 2 and "two results for mlcd_l14 on food101" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
    assert not list(tmp_path.glob("*.log")) and not (tmp_path / "outputs").exists()


# --- cells that are not plain protocol runs (issue 13) --------------------------------------


def flagged_results(root: Path) -> dict[str, Path]:
    """One result per way a run departs from the protocol, and two that do not."""
    torch_yaml = OmegaConf.load(CONFIGS / "probe" / "torch.yaml")  # the defaults as shipped
    plain = json.loads(plain_config("mlcd_l14"))
    changed = {
        "food101": {"converged": False, "search": [{"C": 0.01, "converged": False}]},
        "cifar10": {"git": "0123abc-dirty"},
        "cifar100": {"config": {**plain, "probe": {**plain["probe"], "tol": torch_yaml.tol * 10,
                                                   "max_iter": 7}}},
        "birdsnap": {"config": {**plain, "encoder": {**plain["encoder"], "feature": "cls"}}},
        "sun397": {"dtype": "bfloat16"},  # bf16 on the CPU: not what `auto` means there
        "dtd": {"config": {**plain, "probe": {**plain["probe"], "whiten": True}}},
        # plain: bf16 autocast is what `auto` means on a GPU; speed knobs are not settings
        "pets": {"device": "cuda", "dtype": "bfloat16"},
        "caltech101": {"config": {**plain, "probe": {**plain["probe"], "stack": True,
                                                     "tol": float(torch_yaml.tol)}}},
    }  # fmt: skip
    return {
        ds: write(root / "mlcd_l14" / f"{ds}.json", result("mlcd_l14", ds, 80.0, **extra))
        for ds, extra in changed.items()
    }


def test_cells_not_from_plain_protocol_runs_carry_a_dagger(tmp_path: Path) -> None:
    root = tmp_path / "results"
    files = flagged_results(root)
    write(root / "mlcd_l14" / "pets.json", result("mlcd_l14", "pets", 80.0, "mean_per_class",
                                                  device="cuda", dtype="bfloat16"))  # fmt: skip
    write(root / "mlcd_l14" / "caltech101.json", {
        **json.loads(files["caltech101"].read_text()), "metric": "mean_per_class"})  # fmt: skip
    table, paths, md = make_table(table_cfg("mlcd_linear_probe", [f"results_dir={root}"]))
    shipped = OmegaConf.load(CONFIGS / "probe" / "torch.yaml")
    tol, max_iter = float(shipped.tol), shipped.max_iter
    reasons = {
        "Food101": "not converged (C=0.01)",
        "CIFAR-10": "harness commit 0123abc-dirty (uncommitted changes)",
        "CIFAR-100": f"probe.max_iter=7 (configs/probe/torch.yaml: {max_iter}); "
        f"probe.tol={tol * 10}",
        "Birdsnap": "encoder.feature=cls (configs/encoder/mlcd_l14.yaml: pooler_output)",
        "SUN397": "features computed in bfloat16 (encoder config dtype auto: float32 on cpu)",
        "DTD": "probe.whiten=True (configs/probe/torch.yaml: null)",
    }
    for label, why in reasons.items():
        assert md_row(md, label)[1] == "80.00\u2020", label
        (line,) = [
            ln for ln in md.splitlines() if ln.startswith(f"- MLCD ViT-L/14-336 on {label} (")
        ]
        assert f"(`{root / 'mlcd_l14'}/" in line and why in line, line
    for label in ("Oxford-IIIT Pets", "Caltech-101"):
        assert md_row(md, label)[1] == "80.00", label
    assert "\u2020 Not a plain protocol run (6):" in md
    tex = paths["tex"].read_text()
    assert r"Food101 & 80.00$^{\dagger}$ & " in tex and r"Oxford-IIIT Pets & 80.00 & " in tex
    assert r"not a plain protocol run:" in tex and r"encoder.feature=cls" in tex
    assert tex.count(r"\texttt{") == 6 and r"mlcd\_l14" in tex


def test_a_result_without_a_config_block_is_flagged(tmp_path: Path) -> None:
    bare = {"encoder": "mlcd_l14", "dataset": "food101", "metric": "top1", "score": 90.0}
    write(tmp_path / "r" / "mlcd_l14" / "food101.json", bare)
    _, _, md = make_table(table_cfg("mlcd_linear_probe", [f"results_dir={tmp_path / 'r'}"]))
    assert md_row(md, "Food101")[1] == "90.00\u2020"
    assert "not converged (the refit); no config block: cannot tell its settings" in md
