"""Grids: configs expand to the contract's runs; task files; the SLURM array script; submitit."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIGS, REPO, config_names, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from resultkit import write_result

from probe.launch.grid import expand, make_grid, sbatch_command

# The contract (docs/protocol.md sections 1 and 4, issue 6): config names in the published order.
DATASETS = ["food101", "cifar10", "cifar100", "birdsnap", "sun397", "stanford_cars",
            "fgvc_aircraft", "dtd", "pets", "caltech101", "flowers102", "imagenet"]  # fmt: skip
ENCODERS = ["mlcd_b32", "mlcd_l14", "mlcd_bigg14_224", "mlcd_bigg14_336", "mlcd_bigg14_448",
            "clip_l14", "siglip_so400m", "dfn5b_h14"]  # fmt: skip
CONTRACT = {
    "mlcd_linear_probe": (["mlcd_l14", "clip_l14"], DATASETS),
    "mlcd_imagenet": (["mlcd_b32", "mlcd_l14", "mlcd_bigg14_224"], ["imagenet"]),
    "all": (ENCODERS, DATASETS),
}
SCRIPT = REPO / "slurm" / "probe_array.sbatch"


def compose_app(config_name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def pairs(runs: list[list[str]]) -> list[tuple[str, str]]:
    return [(r[0].removeprefix("encoder="), r[1].removeprefix("dataset=")) for r in runs]


@pytest.mark.parametrize("name", config_names("grid"))
def test_grid_config_composes_and_expands(name: str) -> None:
    grid = compose_app("probe_grid", [f"grid={name}"]).grid
    assert grid.name == name
    runs = expand(grid)
    variants = len(grid.variants)
    assert len(runs) == len(grid.encoders) * len(grid.datasets) * variants
    assert len({tuple(r) for r in runs}) == len(runs)
    assert all(r[0].startswith("encoder=") and r[1].startswith("dataset=") for r in runs)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_grids_expand_to_the_expected_runs(name: str) -> None:
    encoders, datasets = CONTRACT[name]
    runs = expand(compose_app("probe_grid", [f"grid={name}"]).grid)
    assert pairs(runs) == list(itertools.product(encoders, datasets))
    assert all(len(r) == 2 for r in runs)  # no hidden overrides in the paper grids


def test_all_is_the_union_plus_the_other_encoders() -> None:
    every = set(pairs(expand(compose_app("probe_grid", ["grid=all"]).grid)))
    for name in ("mlcd_linear_probe", "mlcd_imagenet"):
        assert set(pairs(expand(compose_app("probe_grid", [f"grid={name}"]).grid))) <= every
    assert every == set(itertools.product(ENCODERS, DATASETS))


GRID_NAMES = sorted(
    {("encoder", e) for e in ENCODERS} | {("dataset", d) for d in DATASETS}
)  # fmt: skip


@pytest.mark.parametrize(("group", "name"), GRID_NAMES)
def test_contract_names_have_configs(group: str, name: str) -> None:
    """Encoder/dataset configs land from other branches; each is checked once it exists."""
    if name not in config_names(group):
        pytest.skip(f"configs/{group}/{name}.yaml not on this branch yet")
    cfg = compose_app("config", [f"{group}={name}"])
    assert cfg[group].name == name


def test_unknown_names_fail_with_every_problem_listed(tmp_path: Path) -> None:
    from probe.core.errors import ProbeError

    grid = {"name": "bad", "encoders": ["pixels", "nope_enc"], "datasets": ["digits", "nope_ds"]}
    cfg = OmegaConf.create(
        {"grid": grid, "results_dir": str(tmp_path), "tasks_dir": str(tmp_path), "force": False}
    )
    with pytest.raises(ProbeError, match="2 problem") as err:
        make_grid(cfg)
    assert "encoder/nope_enc" in str(err.value) and "dataset/nope_ds" in str(err.value)


def tiny_grid_cfg(tmp_path: Path, *, force: bool = False) -> OmegaConf:
    """pixels x digits variants: two runs with distinct result files, fast probes."""
    grid = {
        "name": "tiny",
        "encoders": ["pixels"],
        "datasets": ["digits"],
        "variants": [
            ["encoder.name=pix4", "encoder.size=4"],
            ["encoder.name=pix2", "encoder.size=2"],
        ],
        "overrides": ["probe.max_iter=50"],
    }
    return OmegaConf.create(
        {
            "grid": grid,
            "results_dir": str(tmp_path / "results"),
            "tasks_dir": str(tmp_path / "results" / "tasks"),
            "force": force,
            "extra": f"cache_dir={tmp_path / 'cache'} data_root={tmp_path / 'data'}",
        }
    )


def fake_result(path: Path) -> None:
    write_result(path, {"encoder": path.parent.name, "dataset": path.stem})


def test_task_file_skips_existing_results_unless_forced(tmp_path: Path) -> None:
    task_file, todo, done = make_grid(tiny_grid_cfg(tmp_path))
    assert task_file == tmp_path / "results" / "tasks" / "tiny.txt"
    lines = task_file.read_text().splitlines()
    res = tmp_path / "results"
    assert lines[0] == (
        f"encoder=pixels dataset=digits encoder.name=pix4 encoder.size=4 probe.max_iter=50 "
        f"cache_dir={tmp_path / 'cache'} data_root={tmp_path / 'data'} results_dir={res}"
        f"  # result: {res / 'pix4' / 'digits.json'}"
    )
    assert lines[1].endswith(f"# result: {res / 'pix2' / 'digits.json'}") and len(lines) == 2
    fake_result(res / "pix4" / "digits.json")
    task_file, todo, done = make_grid(tiny_grid_cfg(tmp_path))
    assert [r.result.parent.name for r in todo] == ["pix2"] and len(done) == 1
    assert len(task_file.read_text().splitlines()) == 1
    _, todo, done = make_grid(tiny_grid_cfg(tmp_path, force=True))
    assert len(todo) == 2 and not done
    fake_result(res / "pix2" / "digits.json")
    task_file, todo, done = make_grid(tiny_grid_cfg(tmp_path))
    assert not todo and len(done) == 2 and task_file.read_text() == ""
    assert sbatch_command(Path("/t/x.txt"), 40, parallel=16, force=False).startswith(
        "sbatch --array=1-40%16 "
    )
    assert "--export=ALL,PROBE_FORCE=1" in sbatch_command(Path("t"), 2, parallel=16, force=True)


def test_grid_cli_prints_the_sbatch_command(tmp_path: Path) -> None:
    (tmp_path / "conf" / "grid").mkdir(parents=True)
    (tmp_path / "conf" / "grid" / "two.yaml").write_text(
        "name: two\nencoders: [pixels]\ndatasets: [digits]\n"
        "variants: [[encoder.name=a], [encoder.name=b]]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "probe.grid", "grid=two", f"results_dir={tmp_path / 'r'}",
         f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "parallel=1"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    task_file = tmp_path / "r" / "tasks" / "two.txt"
    # pixels runs need no GPU: the command asks for none and the default memory of CPU runs
    flags = "--gres=none --mem=16G --requeue"
    assert f"sbatch --array=1-2%1 {flags} slurm/probe_array.sbatch {task_file}" in proc.stdout
    assert "2 runs to do, 0 already done" in proc.stdout
    assert not list(REPO.glob("probe.grid.log")) and not (REPO / "outputs").exists()


def run_task(task_file: Path, task_id: int, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ, "SLURM_ARRAY_TASK_ID": str(task_id), "PROBE_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO), **env,
    }  # fmt: skip
    return subprocess.run(
        ["bash", str(SCRIPT), str(task_file)],
        capture_output=True, text=True, env=full_env, cwd=task_file.parent, timeout=600,
    )  # fmt: skip


def test_sbatch_script_runs_each_task_once(tmp_path: Path) -> None:
    task_file, todo, _ = make_grid(tiny_grid_cfg(tmp_path))
    first, second = (r.result for r in todo)
    # task 1 in two stages (the GPU/CPU split), task 2 in one
    extract = run_task(task_file, 1, PROBE_STAGE="extract")
    assert extract.returncode == 0, extract.stderr[-3000:]
    assert not first.exists() and list((tmp_path / "cache" / "pix4").rglob("meta.json"))
    probe = run_task(task_file, 1, PROBE_STAGE="probe")
    assert probe.returncode == 0, probe.stderr[-3000:]
    both = run_task(task_file, 2)
    assert both.returncode == 0, both.stderr[-3000:]
    for path, dim in ((first, 16), (second, 4)):
        rec = json.loads(path.read_text())
        assert rec["feature_dim"] == dim and rec["config"]["probe"]["max_iter"] == 50
    stamp = first.stat().st_mtime_ns
    again = run_task(task_file, 1)
    assert again.returncode == 0 and "is done: skipping" in again.stdout
    assert first.stat().st_mtime_ns == stamp
    outside = run_task(task_file, 3)
    assert outside.returncode == 2 and "outside 1-2" in outside.stderr
    unset = run_task(task_file, 1, SLURM_ARRAY_TASK_ID="")
    assert unset.returncode != 0 and "SLURM_ARRAY_TASK_ID" in unset.stderr


def test_slurm_launcher_config_has_cluster_defaults() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.cpus_per_task >= 1
    assert launcher.mem_gb > 0 and launcher.timeout_min > 0 and launcher.array_parallelism > 0
    assert "${hydra.job.num}" in OmegaConf.to_yaml(cfg.hydra.sweep)


def test_submitit_local_multirun_jobs_write_their_own_dirs(tmp_path: Path) -> None:
    """`python -m probe -m hydra/launcher=submitit_local`: 2 jobs, 2 results, 2 job dirs."""
    args = [
        "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
        "dataset.name=da,db", "encoder.size=2", "probe.max_iter=30",
        "results_dir=results", f"cache_dir={tmp_path / 'cache'}",
    ]  # fmt: skip
    proc = run_cli(args, cwd=tmp_path)  # relative results_dir: resolved in the launch dir
    assert proc.returncode == 0, proc.stderr[-3000:]
    for ds in ("da", "db"):
        assert json.loads((tmp_path / "results" / "pixels" / f"{ds}.json").read_text())["score"]
    (sweep,) = (tmp_path / "results" / "logs" / "multirun").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if not p.name.startswith("."))
    assert jobs == ["0_pixels_da", "1_pixels_db", "multirun.yaml"]
    for job, ds in (("0_pixels_da", "da"), ("1_pixels_db", "db")):
        assert OmegaConf.load(sweep / job / ".hydra" / "config.yaml").dataset.name == ds
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2


def test_variants_sharing_a_result_file_are_refused(tmp_path: Path, monkeypatch) -> None:
    """probe=torch and probe=sklearn would write one pixels/digits.json (issue 13, defect 5)."""
    from probe.core.errors import ProbeError

    cfg = tiny_grid_cfg(tmp_path)
    cfg.grid.variants = [["probe=torch"], ["probe=sklearn"], ["encoder.name=pix"]]
    with pytest.raises(ProbeError) as err:
        make_grid(cfg)
    msg = str(err.value)
    shared = tmp_path / "results" / "pixels" / "digits.json"
    assert msg.startswith(f"1 result file(s) would be written by more than one run: {shared} by")
    assert "`encoder=pixels dataset=digits probe=torch probe.max_iter=50" in msg
    assert "`encoder=pixels dataset=digits probe=sklearn probe.max_iter=50" in msg
    assert (
        "encoder.name=pix " not in msg and "results_dir=DIR" in msg and "encoder.name=NAME" in msg
    )
    assert not (tmp_path / "results" / "tasks" / "tiny.txt").exists()
    # a results_dir per variant (relative: resolved here, written absolute) makes them distinct
    cfg.grid.variants = [["probe=torch"], ["probe=sklearn", "results_dir=by_sklearn"]]
    monkeypatch.chdir(tmp_path)
    task_file, todo, _ = make_grid(cfg)
    assert [r.result for r in todo] == [shared, tmp_path / "by_sklearn" / "pixels" / "digits.json"]
    lines = task_file.read_text().splitlines()
    assert (
        lines[1].count("results_dir=") == 1 and f"results_dir={tmp_path / 'by_sklearn'}" in lines[1]
    )


def test_dry_run_prints_images_cache_and_probe_memory_and_writes_nothing(
    tmp_path: Path, capsys
) -> None:
    from probe.grid import dry_run
    from probe.launch.resources import memory_gb
    from probe.solvers.memory import estimate

    (tmp_path / "conf" / "grid").mkdir(parents=True)
    (tmp_path / "conf" / "grid" / "kinds.yaml").write_text(
        "name: kinds\nencoders: [dinov2_g14]\ndatasets: [imagenet, cifar100]\n"
        "variants: [[encoder.feature=last4]]\n"
        "overrides: ['encoder.features=[pooler_output,cls+mean,last4]']\n"
    )
    cfg = compose_app("probe_grid", ["grid=kinds", f"results_dir={tmp_path / 'r'}",
                                     f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
                                     "dry_run=true", "extra='stage=probe'"])  # fmt: skip
    dry_run(cfg)
    out = capsys.readouterr().out
    assert "2 runs to do, 0 already done (dry run: nothing written)" in out
    assert not (tmp_path / "r").exists()
    line = next(x for x in out.splitlines() if x.endswith(
        "encoder=dinov2_g14 dataset=imagenet encoder.feature=last4 "
        "'encoder.features=[pooler_output,cls+mean,last4]' stage=probe"))  # fmt: skip
    images, cache, host, device, mem = line.split()[:5]
    assert images == "1,331,167"  # docs/protocol.md: 1,281,167 train + 50,000 test
    assert float(cache) == round(1_331_167 * 1536 * (1 + 2 + 5) * 4 / 2**30, 2)  # every kind
    est = estimate(
        backend="torch",
        n_train=1_231_167,
        n_val=50_000,
        n_test=50_000,
        dim=5 * 1536,
        num_classes=1000,
    )  # the probed kind: last4, 5 x 1536 wide
    assert float(host) == round(est.host / 2**30, 2) and device == "-"
    run = compose_app("config", ["encoder=dinov2_g14", "dataset=imagenet",
                                 "encoder.feature=last4", "stage=probe"])  # fmt: skip
    assert mem == f"{memory_gb(run, gpu=False)}G"
    assert f"each array task asks for: --gres=none --mem={mem} --requeue" in out
