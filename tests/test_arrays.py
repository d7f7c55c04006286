"""Rows read from a cached memory map: same values, and the map never becomes resident."""

from __future__ import annotations

import numpy as np

from probe.core.arrays import read_rows


def _rss_file_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


def test_read_rows_equals_slicing_and_leaves_the_map_unmapped(tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.standard_normal((16384, 1024), dtype=np.float32))  # 64 MiB
    arr = np.load(tmp_path / "f.npy", mmap_mode="r")
    before = _rss_file_kib()
    total = 0.0
    for s in range(0, len(arr), 1000):
        rows = read_rows(arr, s, s + 1000)
        total += float(rows.sum(dtype=np.float64))
    grew_reading = _rss_file_kib() - before
    np.testing.assert_array_equal(read_rows(arr, 5, 9), arr[5:9])
    assert read_rows(arr, 16380, 20000).shape == (4, 1024)
    assert read_rows(arr[10:20], 0, 3).tolist() == arr[10:13].tolist()  # a view: plain slicing
    assert read_rows(arr, 0, 2, dtype=np.float64).dtype == np.float64
    assert np.isclose(total, float(np.asarray(arr).sum(dtype=np.float64)), rtol=1e-9, atol=1e-6)
    touched = _rss_file_kib() - before  # np.asarray(arr).sum() above touched every page
    assert grew_reading < 8 * 1024 and touched > 48 * 1024, (grew_reading, touched)
