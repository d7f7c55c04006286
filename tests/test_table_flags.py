"""A cell is plain only if its run was (issue 23): every key of every shipped config that can
change a number flags a result whose value differs, and only the documented no-number keys
do not. Records are composed here with the real configs, as a run records them."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
from conftest import CONFIGS, REPO, compose_cfg, config_names
from omegaconf import OmegaConf

from probe.core.card import apply_card, card_name
from probe.core.device import auto_dtype
from probe.launch.grid import expand
from probe.report.record import result_name
from probe.report.tables.flags import GROUPS, NO_NUMBER_KEYS, no_number, protocol_flags


def record(overrides: list[str], *, device: str = "cpu", **fields: Any) -> dict[str, Any]:
    """The fields `protocol_flags` reads of a converged run composed from `overrides`."""
    cfg = apply_card(compose_cfg(overrides))  # as `python -m probe` applies its card
    asked = cfg.encoder.get("dtype", "auto")
    out = {
        "encoder": result_name(cfg.encoder, cfg.probe, protocol=card_name(cfg)),
        "dataset": cfg.dataset.name, "protocol": card_name(cfg),
        "eval": cfg.eval.name, "converged": True, "search": [{"C": 1.0, "converged": True}],
        "final_fit": {"converged": True}, "git": "0123abc", "backend": cfg.probe.name,
        "device": device, "dtype": auto_dtype(device) if asked == "auto" else asked,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }  # fmt: skip
    if cfg.eval.name == "fewshot":
        out["by_k"] = {str(k): {"converged": [True] * cfg.eval.seeds} for k in cfg.eval.shots}
    return {**out, **fields}


def leaves(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict) or not node:
        return [prefix]
    return [k for key, v in node.items() for k in leaves(v, f"{prefix}.{key}".lstrip("."))]


def changed(value: Any) -> Any:
    """A value of the same kind that differs from `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "_x"
    if isinstance(value, list):
        return [*value, "x"]
    return {"x": 1} if isinstance(value, dict) else "x"


def perturbed(rec: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(rec)
    *path, last = key.split(".")
    node = out["config"]
    for part in path:
        node = node[part]
    node[last] = changed(node[last])
    return out


SHIPPED = [(g, n) for g in GROUPS for n in config_names(g)] + [("top", "config")]


@functools.cache
def keys_of(group: str, name: str) -> tuple[dict[str, Any], list[str]]:
    # a card fixes an image encoder's keys: compose it over one (pixels has none to fix),
    # with an evaluation it defines (protocol=clip_benchmark: eval=sgd_linear only)
    image = ["encoder=dinov2_l14"] if group == "protocol" else []
    if group == "protocol" and "linear" not in (evals := compose_cfg([f"protocol={name}"])
                                                 .protocol.evals):  # fmt: skip
        image.append(f"eval={evals[0]}")
    rec = record([] if group == "top" else [f"{group}={name}", *image])
    keys = leaves(rec["config"])
    mine = [k for k in keys if k.split(".")[0] not in GROUPS] if group == "top" else [
        k for k in keys if k.startswith(f"{group}.")]  # fmt: skip
    return rec, mine


@pytest.mark.parametrize(("group", "name"), SHIPPED, ids=[f"{g}/{n}" for g, n in SHIPPED])
def test_every_shipped_key_flags_unless_it_cannot_change_a_number(group: str, name: str) -> None:
    rec, keys = keys_of(group, name)
    assert protocol_flags(rec) == [], "the shipped config as it stands is a plain run"
    assert keys, f"no keys found in {group}/{name}"
    where = "configs/config.yaml" if group == "top" else f"configs/{group}/{name}.yaml"
    for key in keys:
        flags = protocol_flags(perturbed(rec, key))
        if key == "protocol.name":  # an unknown card: what it fixed is compared with no card
            assert f"no configs/protocol/{changed(name)}.yaml" in " ".join(flags), flags
        elif no_number(key):  # a renamed group has no file to compare with: said as such
            assert [f for f in flags if not f.startswith("no configs/")] == [], key
        else:
            assert any(f.startswith(f"{key}=") and f"({where}: " in f for f in flags), (key, flags)


def test_keys_added_to_a_record_or_missing_from_it_flag() -> None:
    rec = record(["dataset=food101"])
    rec["config"]["dataset"]["val"]["stratify"] = False
    rec["config"]["new_knob"] = 1
    rec["config"]["eval"]["extra"] = {"a": 1}
    del rec["config"]["bootstrap"]["resamples"]
    assert protocol_flags(rec) == [
        "bootstrap.resamples=null (configs/config.yaml: 1000)",
        "dataset.val.stratify=False (configs/dataset/food101.yaml: null)",
        "eval.extra.a=1 (configs/eval/linear.yaml: null)",
        "new_knob=1 (configs/config.yaml: null)",
    ]


def test_the_issues_run_and_the_keys_it_names_are_flagged() -> None:
    rec = record(["seed=3", "dataset.val.fraction=0.5", "bootstrap.level=0.5"])
    assert protocol_flags(rec) == [
        "bootstrap.level=0.5 (configs/config.yaml: 0.95)",
        "dataset.val.fraction=0.5 (configs/dataset/digits.yaml: 0.2)",
        "dataset.val.seed=3 (configs/dataset/digits.yaml: 0)",
        "seed=3 (configs/config.yaml: 0)",
    ]
    cases = [
        ("food101", "skip_corrupt=true", "skip_corrupt=True (configs/dataset/food101.yaml: False)"),
        ("food101", "source=hf", "source=hf (configs/dataset/food101.yaml: torchvision_ds)"),
        ("sun397", "partition=2", "partition=2 (configs/dataset/sun397.yaml: 1)"),
        ("caltech101", "split_seed=1", "split_seed=1 (configs/dataset/caltech101.yaml: 0)"),
    ]
    for dataset, override, why in cases:
        flags = protocol_flags(record([f"dataset={dataset}", f"dataset.{override}"]))
        assert f"dataset.{why}" in flags, (override, flags)


def test_knn_and_fewshot_records_compare_their_eval_config() -> None:
    assert protocol_flags(record(["eval=knn", "eval.query_chunk=7"])) == []
    assert protocol_flags(record(["eval=knn", "eval.temperature=0.1"])) == [
        "eval.temperature=0.1 (configs/eval/knn.yaml: 0.07)"
    ]
    few = record(["eval=fewshot", "eval.shots=[1,2]"])
    assert protocol_flags(few) == [
        "eval.shots=[1, 2] (configs/eval/fewshot.yaml: [1, 2, 4, 8, 16])"
    ]
    few = record(["eval=fewshot"])
    few["by_k"]["4"]["converged"][2] = False
    assert protocol_flags(few) == ["not converged (k=4 draw 2)"]


@pytest.mark.parametrize("grid", config_names("grid"))
def test_every_run_a_shipped_grid_makes_is_plain(grid: str) -> None:
    """Per-run variants (dinov2_kinds: encoder.feature, encoder.features) are filed under
    tagged names (`dinov2_l14@last4`); the name says the kind, so the cell is plain."""
    spec = OmegaConf.load(CONFIGS / "grid" / f"{grid}.yaml")
    runs = [r for r in expand(spec) if r[1] in (f"dataset={spec.datasets[0]}", "dataset=sun397")]
    assert runs
    for run in runs:
        rec = record(run)
        assert protocol_flags(rec) == [], (run, rec["encoder"])


def test_machine_paths_and_speed_settings_keep_a_cell_plain(monkeypatch) -> None:
    monkeypatch.setenv("PROBE_DATA_ROOT", "/cluster/data")
    args = ["encoder=mlcd_l14", "dataset=food101", "cache_dir=/scratch/cache",
            "results_dir=/scratch/results", "device=cuda", "num_workers=16", "batch_size=64",
            "extract.prefetch_mb=512", "memory_check=false", "stage=probe", "probe.stack=true",
            "encoder.revision=abc123", "encoder.model=/models/mlcd"]  # fmt: skip
    rec = record(args, device="cuda")
    assert rec["config"]["dataset"]["root"] == "/cluster/data/food101"
    assert rec["dtype"] == "bfloat16" and protocol_flags(rec) == []
    tagged = record(["encoder=dinov2_l14", "encoder.feature=last4", "probe.normalize=l2"])
    assert tagged["encoder"] == "dinov2_l14@last4@l2" and protocol_flags(tagged) == []
    wrong = {**tagged, "encoder": "dinov2_l14@cls"}  # the name says another kind
    assert protocol_flags(wrong) == [
        "encoder.feature=last4 (result name dinov2_l14@cls: cls)",
        "probe.normalize=l2 (configs/probe/torch.yaml: none)",
    ]


def test_a_name_without_a_shipped_config_is_said_so() -> None:
    renamed = record(["encoder.name=px_a"])
    assert protocol_flags(renamed) == [
        "no configs/encoder/px_a.yaml to compare encoder settings with"
    ]
    odd = {**record([]), "encoder": "pixels@last4"}  # pixels has no feature kinds
    assert protocol_flags(odd) == [
        "cannot compose the shipped config for encoder=pixels dataset=digits probe=torch "
        "eval=linear protocol=clip encoder.feature=last4: Could not override 'encoder.feature'."
    ]


def test_the_no_number_list_is_documented() -> None:
    doc = (REPO / "docs" / "tables.md").read_text()
    missing = [k for k in NO_NUMBER_KEYS if f"`{k}`" not in doc]
    assert missing == [], f"docs/tables.md does not list {missing}"
