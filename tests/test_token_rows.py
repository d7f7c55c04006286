"""Reading the token cache: N x T x D float16 row selections (`probe/core/token_rows.py`) with
the array face an evaluation on tokens uses, carved by the protocol's splits as pooled rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe.core.errors import ProbeError


def token_map(tmp_path: Path, name: str, n: int, seed: int) -> np.ndarray:
    """An N x 5 x 3 float16 memory map, as `CacheEntry.load` returns a token entry."""
    x = np.random.default_rng(seed).standard_normal((n, 5, 3)).astype(np.float16)
    np.save(tmp_path / f"{name}.npy", x)
    return np.load(tmp_path / f"{name}.npy", mmap_mode="r")


def test_token_rows_have_the_array_face(tmp_path) -> None:
    from probe.core.rows import Rows
    from probe.core.token_rows import TokenRows

    X, V = token_map(tmp_path, "train", 40, 0), token_map(tmp_path, "val", 10, 1)
    rows = Rows.of(X)
    assert isinstance(rows, TokenRows) and rows.shape == (40, 5, 3) and rows.ndim == 3
    assert rows.dtype == np.float16 and len(rows) == 40 and rows.nbytes == X.nbytes
    idx = np.array([7, 3, 3, 39, 0, 1, 2])
    sel = rows[idx]  # a selection, array-like: read on np.asarray
    assert isinstance(sel, TokenRows) and sel.shape == (7, 5, 3)
    assert np.asarray(sel).dtype == np.float16 and np.array_equal(np.asarray(sel), X[idx])
    assert np.array_equal(sel[2:5], X[idx][2:5]) and np.array_equal(sel[-1], X[2])
    assert np.array_equal(sel.read(0, 3), X[idx][:3])
    assert np.array_equal(rows[np.arange(40) % 2 == 0].read(0, 20), X[::2])
    both = Rows.cat(sel, V)
    assert isinstance(both, TokenRows) and both.shape == (17, 5, 3)
    assert np.array_equal(np.asarray(both), np.concatenate([X[idx], V]))
    head = both.head(7)
    assert head.origin == (both, 7) and np.array_equal(np.asarray(head), X[idx])
    assert np.array_equal(both.read(5, 9), np.concatenate([X[idx][5:], V[:2]]))
    assert both.block_rows(budget=100) == 3  # 30 bytes a row
    with pytest.raises(ValueError, match="different row shapes"):
        Rows.cat(rows, Rows.of(np.zeros((3, 4, 3), np.float16)))
    with pytest.raises(ProbeError, match="probe.normalize=l2 normalises pooled feature rows"):
        rows.normalized()
    plain = Rows.of(np.ones((4, 3), np.float32))  # 2-D: the float32 Rows, as before
    assert type(plain) is Rows and plain.shape == (4, 3) and plain.dtype == np.float32


def test_the_protocol_splits_carve_a_token_cache_as_they_carve_pooled_rows(tmp_path) -> None:
    from probe.datasets.base import ValSpec
    from probe.evaluations import cards
    from probe.evaluations.splits import protocol_splits
    from probe.features.cached import CachedDataset

    X, Xt = token_map(tmp_path, "train", 60, 0), token_map(tmp_path, "test", 20, 1)
    y, yt = np.arange(60) % 3, np.arange(20) % 3
    pooled = {"train": (X.mean(1).astype(np.float32), y), "test": (Xt.mean(1), yt)}
    facts = CachedDataset(name="synth", num_classes=3, metric="top1", val=ValSpec(), info={},
                          expected_sizes=None, source_splits=["train", "test"])  # fmt: skip
    for rule in (protocol_splits, cards.random_fraction, cards.shuffled_stratified_fraction):
        got = rule(facts, {"train": (X, y), "test": (Xt, yt)})
        ref = rule(facts, pooled)
        for (tok, labels), (vec, ref_labels) in zip(got, ref, strict=True):
            assert tok.shape[1:] == (5, 3) and tok.dtype == np.float16
            assert np.array_equal(labels, ref_labels)
            # the same rows: the tokens' means are the pooled rows the rule picked
            assert np.array_equal(np.asarray(tok).mean(1).astype(np.float32), np.asarray(vec))
