"""What others who can write to the home (a shared or group-writable folder) or a loose umask
could do to tether's files: folders tether creates are private, parents included."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import tether
from tether.errors import ConfigError


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


# -- folders ------------------------------------------------------------------------------

def test_missing_parents_of_the_home_are_made_private_not_world_writable(tmp_path, monkeypatch):
    base = tmp_path / "base"
    base.mkdir()
    base.chmod(0o755)  # an existing parent keeps its mode
    home = base / "a" / "b" / "home"
    monkeypatch.setenv("TETHER_HOME", str(home))
    with umask(0):
        tether.Tether()
    assert [mode(p) for p in (base, base / "a", base / "a" / "b", home, home / "sessions")] == \
        [0o755, 0o700, 0o700, 0o700, 0o700]


def test_a_file_where_a_parent_of_the_home_should_be_is_named(tmp_path):
    (tmp_path / "a").write_text("")
    with pytest.raises(ConfigError, match="(?i)not a directory"):
        tether.Tether(home=tmp_path / "a" / "home")
    with pytest.raises(ConfigError, match="is not a directory"):
        tether.Tether(home=tmp_path / "a")
