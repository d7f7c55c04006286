"""`eval=attentive` and `eval=sgd_linear`: the heads against transcriptions of their sources
(tests/reference_heads.py), heads trained together equal to heads trained alone, a task only
attention solves, a choice that never looks at test, refusals in one line, and a run through
the evaluation and `probe.api.save` on a token array (the CLI path waits for the token cache).
"""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import reference_heads as ref
import torch
from conftest import compose_cfg

from probe import api
from probe.core import params
from probe.core.errors import ProbeError
from probe.evaluations import attentive, gridprobe
from probe.evaluations.outcome import Task
from probe.evaluations.pooler import AimHeads, AttentiveHeads, LinearHeads
from probe.evaluations.trainer import Schedule, Source, batches, buffer_rows, train
from probe.report.done import read_result
from probe.report.record import result_path
from probe.report.tables.write import make_table
from probe.run import run


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread (OpenMP's start-up costs more than these products)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _perturbed(heads):
    """Heads whose weights differ from one another and from their initial values."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in heads.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return heads


def tokens(n, *, seed, t=6, d=32, k=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, t, d)).astype(np.float16), rng.integers(0, k, n)


def one_token(n, *, seed, t=8, d=32, k=4):
    """The label is the class vector of the one token marked by `m`; the other tokens hold
    every other class once, so the mean token does not depend on the label at all."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))[0]
    m, c = basis[0] * 3, basis[1 : k + 1] * 2
    y = rng.integers(0, k, n)
    X = rng.normal(scale=0.3, size=(n, t, d))
    for i in range(n):
        pos = rng.permutation(t)
        X[i, pos[0]] += m + c[y[i]]
        for j, other in enumerate(o for o in range(k) if o != y[i]):
            X[i, pos[1 + j]] += c[other]
    return X.astype(np.float16), y


def task_of(train, val, test, **kw) -> Task:
    opts = {"num_classes": 4, "metric": "top1", "device": "cpu", "make_solver": None,
            "bootstrap": {"resamples": 50, "level": 0.95, "seed": 0}, **kw}  # fmt: skip
    return Task(train=train, val=val, test=test, **opts)


# -- the heads against their sources ---------------------------------------------------------
@pytest.mark.parametrize("queries", [1, 2])
def test_the_head_equals_vjepa2s_pooler_on_fixed_weights(queries: int) -> None:
    ours = _perturbed(AttentiveHeads(grid=3, dim=64, num_classes=5, seed=0, queries=queries,
                                     heads=4))  # fmt: skip
    x = torch.randn(6, 9, 64, generator=torch.Generator().manual_seed(2)) * 2 + 0.5
    out = ours(x)
    for g in range(3):
        theirs = ref.AttentiveClassifier(64, 4, 5, num_queries=queries).load_ours(ours.head(g))
        torch.testing.assert_close(out[g], theirs(x), rtol=1e-5, atol=1e-5)


def test_the_initial_head_is_vjepa2s_init() -> None:
    """attentive_pooler.py 61-85: N(0, 0.02) weights, zero biases, unit norms, fc2 / sqrt 2."""
    w = AttentiveHeads(grid=2, dim=256, num_classes=3, seed=0).head(1)
    assert abs(w["kv_weight"].std() - 0.02) < 1e-3 and not w["kv_bias"].any()
    assert abs(w["fc2_weight"].std() - 0.02 / np.sqrt(2)) < 1e-3
    assert (w["norm1_weight"] == 1).all() and not w["norm2_bias"].any()


@pytest.mark.parametrize("training", [True, False])
def test_aim_heads_equal_aims_classifier(training: bool) -> None:
    ours = _perturbed(AimHeads(grid=2, dim=32, num_classes=5, seed=0, queries=2, heads=4))
    x = torch.randn(5, 7, 32, generator=torch.Generator().manual_seed(3)) * 3 + 1
    if not training:  # running statistics from one training batch first
        ours.train()(x)
    out = ours.train(training)(x)
    for g in range(2):
        w = {k: torch.from_numpy(v) for k, v in ours.head(g).items()}
        theirs = ref.AttentionPoolingClassifier(32, 5, num_heads=4, num_queries=2)
        state = {"k.weight": w["k_weight"], "v.weight": w["v_weight"],
                 "cls_token": w["query"][None], "linear.weight": w["linear_weight"]}  # fmt: skip
        theirs.load_state_dict({**theirs.state_dict(), **state})
        if not training:
            theirs.train()(x)
        torch.testing.assert_close(out[g], theirs.train(training)(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.running_var, theirs.bn.running_var)


def test_linear_heads_start_as_torch_linear() -> None:
    torch.manual_seed(5)  # CLIP_benchmark: torch.manual_seed(seed); torch.nn.Linear(D, K)
    theirs = torch.nn.Linear(24, 7)
    w = LinearHeads(grid=3, dim=24, num_classes=7, seed=5).head(2)
    assert np.array_equal(w["coef"], theirs.weight.detach().numpy())
    assert np.array_equal(w["intercept"], theirs.bias.detach().numpy())


def test_the_schedule_is_vjepa2s_and_clip_benchmarks() -> None:
    per_epoch, lr = 7, 1e-3
    opt = torch.optim.AdamW([{"params": [torch.zeros(1, requires_grad=True)],
                              "mc_warmup_steps": int(2 * per_epoch), "mc_start_lr": 2e-4,
                              "mc_ref_lr": lr, "mc_final_lr": 0.0}])  # fmt: skip
    theirs = ref.WarmupCosineLRSchedule(opt, T_max=int(6 * per_epoch))
    ours = Schedule(epochs=6, warmup_epochs=2, start_lr=2e-4, final_lr=0.0, first_step=1)
    for step in range(6 * per_epoch):
        theirs.step()
        got = ours.lr(step, torch.tensor([lr], dtype=torch.float64), steps_per_epoch=per_epoch)
        assert got.item() == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    adjust = ref.cosine_lr(opt, 0.1, 0.0, 6 * per_epoch)
    ours = Schedule(epochs=6, warmup_epochs=0, start_lr=None, final_lr=0.0, first_step=0)
    for step in range(6 * per_epoch):
        adjust(step)
        got = ours.lr(step, torch.tensor([0.1], dtype=torch.float64), steps_per_epoch=per_epoch)
        assert got.item() == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)


def test_one_head_trains_as_vjepa2s_loop() -> None:
    """Our trainer (G = 1) against eval.py's loop (407-426, 281-309: scheduler step, forward,
    cross-entropy, AdamW) on the source's module, fed the same batches."""
    X, y = tokens(90, seed=0)
    sched = Schedule(epochs=3, warmup_epochs=1, start_lr=2e-4, final_lr=0.0, first_step=1)
    start = AttentiveHeads(grid=1, dim=32, num_classes=4, seed=0, heads=2)
    theirs = ref.AttentiveClassifier(32, 2, 4).load_ours(start.head(0))
    ours = train(start, Source(X), y, lrs=[3e-3], wds=[0.01], schedule=sched, batch=16,
                 seed=4, device="cpu")  # fmt: skip
    rng, per_epoch = np.random.Generator(np.random.PCG64(4)), int(np.ceil(90 / 16))
    opt = torch.optim.AdamW([{"params": list(theirs.parameters()), "mc_warmup_steps": per_epoch,
                              "mc_start_lr": 2e-4, "mc_ref_lr": 3e-3, "mc_final_lr": 0.0,
                              "weight_decay": 0.01}])  # fmt: skip
    scheduler = ref.WarmupCosineLRSchedule(opt, T_max=3 * per_epoch)
    for _ in range(3):
        for xb, yb in batches(Source(X), y, batch=16, rng=rng, buffer=buffer_rows(Source(X), 2048)):
            scheduler.step()
            loss = torch.nn.CrossEntropyLoss()(theirs(torch.from_numpy(xb).float()),
                                               torch.from_numpy(yb))  # fmt: skip
            loss.backward()
            opt.step()
            opt.zero_grad()
    want = ref.AttentiveClassifier(32, 2, 4).load_ours(ours.head(0)).state_dict()
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(want[key], value, rtol=1e-4, atol=2e-6, msg=key)


@pytest.mark.parametrize("kind", ["vjepa2", "aim", "linear"])
def test_heads_trained_together_equal_heads_trained_alone(kind: str) -> None:
    X, y = tokens(120, seed=1)
    if kind == "linear":
        X = X.astype(np.float32).mean(1)
        make = partial(LinearHeads, dim=32, num_classes=4, seed=3)
    else:
        make = partial(attentive.POOLERS[kind], dim=32, num_classes=4, seed=3, heads=2)
    lrs, wds = [1e-3, 1e-3, 4e-3, 4e-3], [0.0, 0.05, 0.0, 0.05]
    opts = {"schedule": Schedule(epochs=2, warmup_epochs=1, start_lr=2e-4), "batch": 32,
            "seed": 7, "device": "cpu"}  # fmt: skip
    together = train(make(grid=4), Source(X), y, lrs=lrs, wds=wds, **opts)
    for g in range(4):
        alone = train(make(grid=1), Source(X), y, lrs=[lrs[g]], wds=[wds[g]], **opts)
        for name, value in alone.head(0).items():
            np.testing.assert_allclose(together.head(g)[name], value, rtol=1e-5, atol=1e-6)


# -- what it learns, and what it looks at ----------------------------------------------------
def test_the_attentive_head_finds_the_one_token_a_mean_probe_cannot() -> None:
    splits = [one_token(n, seed=s) for n, s in ((600, 1), (200, 2), (400, 3))]
    opts = {"lrs": [3e-3], "wds": [1e-3], "epochs": 12, "batch_size": 64, "warmup_epochs": 1}
    att = attentive.evaluate(task_of(*splits, refit_on="train"), heads=2, **opts)
    means = [(X.astype(np.float32).mean(1), y) for X, y in splits]
    lin = attentive.evaluate_linear(task_of(*means, refit_on="train"), **opts)
    assert att.fields["score"] > 85, att.fields
    assert lin.fields["score"] < 40, lin.fields  # chance: 25


class Spy:
    """Test rows that note when they are first read."""

    def __init__(self, X, log):
        self.X, self.log = X, log

    def __len__(self) -> int:
        return len(self.X)

    def read(self, a, b):
        self.log.append("test read")
        return np.array(self.X[a:b])


def test_selection_never_reads_test(monkeypatch) -> None:
    (Xt, yt), log = tokens(60, seed=3), []
    original = gridprobe.train
    spy = lambda *a, **k: log.append("train") or original(*a, **k)  # noqa: E731
    monkeypatch.setattr(gridprobe, "train", spy)
    opts = {"lrs": [1e-3, 5e-3], "wds": [0.0, 0.01], "epochs": 2, "batch_size": 32, "heads": 2,
            "warmup_epochs": 1}  # fmt: skip
    plain = attentive.evaluate(task_of(tokens(80, seed=1), tokens(40, seed=2), (Spy(Xt, log), yt)),
                               **opts)  # fmt: skip
    assert log.index("test read") > max(i for i, e in enumerate(log) if e == "train")
    shuffled = np.random.default_rng(0).permutation(yt)
    other = attentive.evaluate(task_of(tokens(80, seed=1), tokens(40, seed=2), (Xt, shuffled)),
                               **opts)  # fmt: skip
    for key in ("lr", "wd", "grid"):
        assert plain.fields[key] == other.fields[key]
    for name, value in plain.head.items():
        if name != "outputs":
            assert np.array_equal(value, other.head[name]), name
    assert np.array_equal(plain.head["outputs"]["test_pred"], other.head["outputs"]["test_pred"])


# -- refusals ----------------------------------------------------------------------------------
BAD = [
    ({"lrs": [0.0]}, "eval.lrs=\\[0.0\\] must be a non-empty list of positive"),
    ({"lrs": []}, "eval.lrs=\\[\\] must be a non-empty list"),
    ({"wds": [-1e-3]}, "eval.wds=\\[-0.001\\] must be a non-empty list of weight decays >= 0"),
    ({"heads": 5}, "eval.heads=5 must divide the token width 32"),
    ({"heads": None}, "eval.heads=null means width / 64, but the tokens are 32 wide"),
    ({"epochs": 0}, "eval.epochs=0 must be a positive integer"),
    ({"prefix": "all"}, "eval.prefix='all' is not valid"),
    ({"search": partial(object), "lrs": [1e-3, 2e-3]}, "eval.search walks the weight decays at"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "message"), BAD)
def test_bad_settings_fail_in_one_line_before_training(options, message, monkeypatch) -> None:
    monkeypatch.setattr(gridprobe, "train", lambda *a, **k: pytest.fail("trained"))
    task = task_of(tokens(20, seed=1), tokens(8, seed=2), tokens(8, seed=3))
    with pytest.raises(ProbeError, match=message) as err:
        attentive.evaluate(task, **{"heads": 2, **options})
    assert "\n" not in str(err.value)


def test_the_wrong_feature_shape_and_a_missing_val_fail_in_one_line(monkeypatch) -> None:
    monkeypatch.setattr(gridprobe, "train", lambda *a, **k: pytest.fail("trained"))
    pooled = [(X.astype(np.float32).mean(1), y) for X, y in (tokens(20, seed=s) for s in (1, 2, 3))]
    cases = [
        (attentive.evaluate, task_of(*pooled), "eval=attentive needs token features"),
        (attentive.evaluate_linear, task_of(tokens(20, seed=1), *pooled[1:]),
         "eval=sgd_linear takes pooled features"),
        (attentive.evaluate_linear, task_of(pooled[0], (pooled[1][0][:0], pooled[1][1][:0]),
                                            pooled[2]), "no val split to choose"),
    ]  # fmt: skip
    for evaluation, task, message in cases:
        with pytest.raises(ProbeError, match=message) as err:
            evaluation(task)
        assert "\n" not in str(err.value)


def test_the_cli_refuses_before_any_work(dirs) -> None:
    with pytest.raises(ProbeError, match="eval=attentive needs token .*encoder.feature=tokens"):
        run(compose_cfg(["eval=attentive", *dirs]))
    for override, message in (("eval.lrs=[0]", "eval.lrs=\\[0\\] must be a non-empty list"),
                              ("eval.wds=[]", "eval.wds=\\[\\] must be a non-empty")):  # fmt: skip
        with pytest.raises(ProbeError, match=message):
            params.check(compose_cfg(["eval=attentive", override]))


# -- end to end --------------------------------------------------------------------------------
def test_sgd_linear_runs_through_the_cli_and_its_result_is_done(dirs, tmp_path) -> None:
    grid = ["eval.lrs=[0.01,0.05]", "eval.wds=[0,0.001]", "eval.epochs=5", "eval.batch_size=64",
            "eval.warmup_epochs=1"]  # fmt: skip
    rec = run(compose_cfg(["eval=sgd_linear", *grid, *dirs]))
    path = tmp_path / "results" / "pixels" / "digits.sgd_linear.json"
    assert rec["path"] == str(path) and read_result(path)[1] is None
    assert rec["score"] > 85 and len(rec["grid"]) == 4 and rec["final_fit"]["rows"] == "train+val"
    with np.load(path.with_suffix(".npz")) as head:
        assert head["coef"].shape == (10, 64) and float(head["lr"]) == rec["lr"]


def test_attentive_end_to_end_through_evaluate_and_save(tmp_path) -> None:
    """An N x T x D float16 memory map (a class token first) through `api.evaluate` and
    `api.save`, as the probe stage will call them once the token cache lands."""
    arrays = {}
    for split, (n, seed) in {"train": (300, 1), "val": (100, 2), "test": (200, 3)}.items():
        X, y = one_token(n, seed=seed, t=7)
        X = np.concatenate([np.zeros((n, 1, 32), np.float16), X], axis=1)  # the prefix token
        mm = np.lib.format.open_memmap(tmp_path / f"{split}.npy", "w+", np.float16, X.shape)
        mm[:] = X
        mm.flush()
        arrays[split] = (np.load(tmp_path / f"{split}.npy", mmap_mode="r"), y)
    task = task_of(arrays["train"], arrays["val"], arrays["test"], prefix_tokens=1)
    evaluation = partial(attentive.evaluate, lrs=[3e-3], wds=[1e-3, 1e-2], epochs=6, heads=2,
                         batch_size=50, warmup_epochs=1, buffer_mb=0.05)  # fmt: skip
    record, outcome = api.evaluate(task, evaluation, name="attentive", encoder="enc@tokens",
                                   dataset="synth")  # fmt: skip
    record.update({"dtype": "float16", "weights": None, "features": None, "config": {}})
    path = result_path(tmp_path / "results", "enc@tokens", "synth", "attentive")
    saved = api.save(path, record, outcome)
    assert path.name == "synth.attentive.json" and read_result(path)[1] is None
    on_disk = json.loads(path.read_text())
    assert on_disk["feature_dim"] == 32 and on_disk["head_settings"]["tokens"] == 7
    assert on_disk["head_settings"]["prefix_tokens_skipped"] == 1 and len(on_disk["grid"]) == 2
    assert saved["score_ci"][0] <= saved["score"] <= saved["score_ci"][1]
    with np.load(path.with_suffix(".npz")) as head:
        assert head["query"].shape == (1, 32) and head["test_pred"].shape == (200,)
        assert (head["test_top5"][:, 0] == head["test_pred"]).all()


def test_the_bench_prints_together_against_alone(capsys) -> None:
    from probe.bench.__main__ import main

    tiny = ["--rows", "48", "--tokens", "3", "--token-dim", "64", "--token-classes", "4",
            "--batch", "16", "--threads", "1"]  # fmt: skip
    assert main(["evals", "--skip", "knn", "--skip", "fewshot", *tiny]) == 0
    out = capsys.readouterr().out
    assert "| 20 heads together" in out and "V-JEPA 2's module" in out and out.endswith("True\n")


def test_the_attentive_table_puts_linear_beside_attentive(tmp_path) -> None:
    """A linear result of `px` and an attentive one of `px@tokens` (digits' 8 x 8 pixels,
    as 64 features and as 8 tokens of 8) on the same test images: one row, both scores, the
    paired difference with its interval."""
    from sklearn.datasets import load_digits
    from tablekit import table_cfg

    from probe.evaluations import linear
    from probe.evaluations.search import Fixed
    from probe.solvers.shipped import build_backend

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    parts = [(X[a:b], y[a:b]) for a, b in ((0, 1000), (1000, 1300), (1300, len(y)))]
    runs = {
        ("px", "linear"): (partial(linear.evaluate, name="linear"), parts),
        ("px@tokens", "attentive"): (
            partial(attentive.evaluate, lrs=[0.01], wds=[1e-3], epochs=3, heads=2, batch_size=64,
                    warmup_epochs=1),
            [(Xp.reshape(len(Xp), 8, 8), yp) for Xp, yp in parts],
        ),
    }  # fmt: skip
    records = {}
    for (encoder, name), (evaluation, split) in runs.items():
        task = task_of(*split, num_classes=10, refit_on="train", strategy=Fixed(C=1.0),
                       make_solver=lambda: build_backend("torch", device="cpu"))  # fmt: skip
        record, outcome = api.evaluate(task, evaluation, name=name, encoder=encoder,
                                       dataset="digits")  # fmt: skip
        record.update({"dtype": "float32", "weights": None, "features": None, "config": None,
                       "test_content_hash": "the same test images"})  # fmt: skip
        path = result_path(tmp_path / "results", encoder, "digits", name)
        records[name] = api.save(path, record, outcome)
    table, paths, md = make_table(table_cfg("attentive", [f"results_dir={tmp_path / 'results'}"]))
    assert (table.encoders, table.datasets) == (["px"], ["digits"])
    row = next(line for line in md.splitlines() if line.startswith("| digits |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    lin, att = records["linear"]["score"], records["attentive"]["score"]
    assert cells[1].startswith(f"{lin:.2f} ± ") and cells[2].startswith(f"{att:.2f} ± ")
    assert cells[3].startswith(f"{att - lin:+.2f} [")
    assert paths["csv"].read_text().count("\n") == 3


def test_the_cli_summary_line_of_a_trained_head() -> None:
    """`python -m probe eval=attentive` ended in a KeyError ('by_k') after writing its result:
    the summary line took every evaluation but linear and k-NN for few-shot."""
    from probe.__main__ import summary

    rec = {"metric": "top1", "eval": "attentive", "score": 50.0, "score_ci": [16.7, 83.3],
           "lr": 5e-4, "wd": 8e-3}  # fmt: skip
    assert summary(rec) == "top1 50.00% [16.70, 83.30] at lr=0.0005, wd=0.008 (chosen on val)"
    assert "lr=0.1, wd=0" in summary({**rec, "eval": "sgd_linear", "lr": 0.1, "wd": 0.0})


def test_a_trained_heads_settings_are_refused_before_extraction(dirs, tmp_path) -> None:
    """eval.warmup_epochs beyond eval.epochs, or heads that cannot divide the encoder's width,
    used to fail only after the tokens were extracted."""
    from conftest import compose_cfg

    from probe.core.errors import ProbeError
    from probe.run import run

    base = [*dirs, "encoder=dinov2_l14", "encoder.feature=tokens", "eval=attentive"]
    with pytest.raises(ProbeError, match=r"eval.warmup_epochs=5 must be in 0..eval.epochs=2"):
        run(compose_cfg([*base, "eval.epochs=2"]))
    with pytest.raises(ProbeError, match=r"eval.heads=7 must divide the token width 1024"):
        run(compose_cfg([*base, "eval.heads=7"]))
    assert not (tmp_path / "cache").exists() and not (tmp_path / "data").exists()
