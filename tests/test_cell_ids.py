"""Cell ids are digests of config dicts: the ids of the default, docs-cpu and sizes grids must stay what they
were before the layers refactor (tests/data/cell_ids.json, written by tests/cell_ids.py on the code before
it), or every user's store would silently stop resuming and pairing."""

from __future__ import annotations

import json

import pytest
from cell_ids import GRIDS, SNAPSHOT, grid_ids


@pytest.mark.parametrize("grid", list(GRIDS))
def test_grid_cell_ids_are_unchanged(grid, tmp_path, monkeypatch):
    # the snapshot was taken when rounds=auto measured up to 4 rounds; it measures up to 3 now (stop 32), so the
    # 4th round's ids (-r3) are no longer in the grid and every other id is what it was
    expected = [i for i in json.loads(SNAPSHOT.read_text())[grid] if not i.endswith("-r3")]
    got = grid_ids(GRIDS[grid], tmp_path, monkeypatch)
    assert len(got) == len(expected)
    assert got == expected, f"{len(set(got) - set(expected))} ids renamed, e.g. {sorted(set(got) - set(expected))[:3]}"
