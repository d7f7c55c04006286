"""Tables and protocol cards (issue 25): the existing tables byte for byte as before; a table
takes only its own protocol's results."""

from __future__ import annotations

from pathlib import Path

import pytest
from tablekit import GOLDEN, mlcd_results, render

# stem of the files under tests/fixtures/tables/ -> (table, overrides). The files were written
# by the code before protocol cards existed (commit 4192690) and must not change.
GOLDEN_CASES = {
    "mlcd_linear_probe": ("mlcd_linear_probe", ()),
    "mlcd_linear_probe.no_ci": ("mlcd_linear_probe", ("ci=false",)),
    "mlcd_imagenet": ("mlcd_imagenet", ()),
}


@pytest.mark.parametrize("stem", sorted(GOLDEN_CASES))
def test_existing_tables_render_as_before(stem: str, tmp_path: Path) -> None:
    name, overrides = GOLDEN_CASES[stem]
    got = render(name, mlcd_results(tmp_path / "results"), *overrides)
    for kind, text in got.items():
        assert text == (GOLDEN / f"{stem}.{kind}").read_text(), f"{stem}.{kind} changed"
