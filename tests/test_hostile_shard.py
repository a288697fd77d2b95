"""The hostile shard end to end (scripts/hostile_shard.py): crafted leak files, special paths
and unsafe names through the real job; every path has one row and no copy leaks a picture."""

from __future__ import annotations

import pytest

from tests.fixtures.scripts import load_script

pytestmark = pytest.mark.slow


def test_hostile_shard_publishes_no_picture_and_accounts_for_every_path(tmp_path, capsys):
    shard = load_script("hostile_shard")
    assert shard.main([str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "0 of them carrying a recoverable picture" in out
    assert "ROWS" not in out and "LEAK" not in out
    for reason in ("not_regular_fifo", "dangling_symlink", "symlink_loop", "name_backslash"):
        assert reason in out
