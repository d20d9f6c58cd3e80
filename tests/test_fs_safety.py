"""What others who can write to the home (a shared or group-writable folder) or a loose umask
could do to tether's files: folders tether creates are private, parents included."""
from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import tether
from tether.errors import ConfigError, SessionCorrupt
from tether.repl_input import LockedFileHistory
from tether.sessions.jsonl import write_atomic

from conftest import sessions_dir


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


# -- links and other things planted in the folders -----------------------------------------
# Whoever can write to the home could plant these; tether refuses to open them, for writing and
# for reading, with an error naming the file, and leaves whatever they point to alone.

@pytest.fixture
def outside(tmp_path) -> Path:
    """A file out of the home, readable by all, that a planted link points to."""
    d = tmp_path / "outside"
    d.mkdir()
    f = d / "notes.txt"
    f.write_text("my notes\n")
    f.chmod(0o644)
    return f


def header(sid: str) -> str:
    return json.dumps({"type": "header", "session": {"id": sid, "created_at": "2024-01-01T00:00:00Z",
                                                     "updated_at": "2024-01-01T00:00:00Z"}}) + "\n"


def test_a_session_file_that_is_a_link_out_of_the_folder_is_neither_written_nor_read(client, outside):
    outside.write_text(header("evil"))
    link = sessions_dir(client) / "evil.jsonl"
    link.symlink_to(outside)
    with pytest.raises(SessionCorrupt, match=f"{link}.*symbolic link"):
        client.add_message("evil", "user", "secret question")
    with pytest.raises(SessionCorrupt, match="symbolic link"):
        client.load_session("evil")
    assert outside.read_text() == header("evil") and mode(outside) == 0o644
    assert client.delete_session("evil")  # removes the link only
    assert not link.is_symlink() and outside.read_text() == header("evil")


def test_listing_names_a_linked_session_file_and_never_reads_through_it(client, outside, caplog):
    client.create_session(title="mine")
    outside.write_text(header("evil"))
    (sessions_dir(client) / "evil.jsonl").symlink_to(outside)
    with caplog.at_level(logging.WARNING, logger="tether"):
        assert [s.title for s in client.list_sessions()] == ["mine"]
    assert any("evil.jsonl" in r.getMessage() and "not a regular file" in r.getMessage() for r in caplog.records)


def test_a_store_given_a_folder_makes_its_missing_parents_private(tmp_path):
    from tether.sessions.jsonl import JsonlStore

    with umask(0):
        JsonlStore(tmp_path / "x" / "y" / "sessions")
    assert [mode(p) for p in (tmp_path / "x", tmp_path / "x" / "y", tmp_path / "x" / "y" / "sessions")] == [0o700] * 3


def test_a_link_to_another_session_in_the_folder_is_refused_too(client):
    sid = client.create_session()
    client.add_message(sid, "user", "kept")
    (sessions_dir(client) / "alias.jsonl").symlink_to(f"{sid}.jsonl")
    with pytest.raises(SessionCorrupt, match="symbolic link"):
        client.add_message("alias", "user", "through the alias")
    assert [m.content for m in client.load_session(sid).messages] == ["kept"]


def test_a_folder_or_a_fifo_under_a_sessions_name_is_an_error_not_a_hang(client):
    (sessions_dir(client) / "dir.jsonl").mkdir()
    with pytest.raises(SessionCorrupt, match="not a regular file"):
        client.add_message("dir", "user", "x")
    fifo = sessions_dir(client) / "fifo.jsonl"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            client.load_session("fifo")
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)

    th = threading.Thread(target=load, daemon=True)
    th.start()
    th.join(5)
    if th.is_alive():  # blocked opening the FIFO: a writer lets it go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        th.join(5)
        pytest.fail("reading a FIFO planted as a session file hung")
    assert len(errors) == 1 and isinstance(errors[0], SessionCorrupt) and "not a regular file" in str(errors[0])
    with pytest.raises(SessionCorrupt, match="not a regular file"):
        client.add_message("fifo", "user", "x")


def test_a_rewrites_temp_file_is_never_one_already_there(client, outside, monkeypatch):
    """The temp file of an atomic rewrite (create, compact, import, the listing index) is created
    where nothing is: a planted link or a leftover under its name is not written through."""
    monkeypatch.setattr(os, "urandom", lambda n: b"\0" * n)  # every attempt picks the same name
    path = sessions_dir(client) / "new.jsonl"
    (path.parent / f".new.jsonl.{os.getpid()}.00000000.tmp").symlink_to(outside)
    with pytest.raises(FileExistsError):
        write_atomic(path, header("new").encode())
    assert outside.read_text() == "my notes\n" and not path.exists()
    monkeypatch.undo()
    write_atomic(path, header("new").encode())  # another name
    assert path.read_text() == header("new") and outside.read_text() == "my notes\n"


def test_a_turn_claim_lock_that_is_a_link_is_refused(client, outside):
    store = client.store
    sid = client.create_session()
    store.claim(sid, "m1")()  # the lock file stays, as for a turn that ended
    (lock,) = (store.locks).glob(f"{sid}.*.turn")
    lock.unlink()
    target = outside.parent / "created-by-claim"
    lock.symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        store.claim(sid, "m1")
    assert not target.exists()


def test_the_input_history_is_not_written_nor_read_through_a_link(tether_home, outside):
    tether_home.mkdir(parents=True)
    history = tether_home / "chat_history"
    target = outside.parent / "history-target"
    history.symlink_to(target)
    notes: list[str] = []
    h = LockedFileHistory(history, warn=notes.append)
    h.store_string("typed secret")
    assert not target.exists()
    history.unlink()
    history.symlink_to(outside)
    outside.write_text("\n# 2024-01-01\n+planted line\n")
    assert list(LockedFileHistory(history, warn=notes.append).load_history_strings()) == []
    h.store_string("again")
    assert outside.read_text() == "\n# 2024-01-01\n+planted line\n"
    assert len(notes) == 2 and all("symbolic link" in n and str(history) in n for n in notes)


# -- a warning when others can change the home -------------------------------------------

@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """tether's log warnings (a handler of its own: the CLI's tests turn propagation off)."""
    got: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: got.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("tether")
    logger.addHandler(handler)
    try:
        yield got
    finally:
        logger.removeHandler(handler)


def test_a_home_or_config_others_can_write_is_warned_about_once(tether_home, warnings_logged):
    tether_home.mkdir()
    (tether_home / "config.toml").write_text("")
    tether_home.chmod(0o777)
    (tether_home / "config.toml").chmod(0o666)
    tether.Tether()
    tether.Tether()
    assert len(warnings_logged) == 2, warnings_logged
    assert f"home folder {tether_home} is writable by all users (mode 777)" in warnings_logged[0]
    assert f"config file {tether_home / 'config.toml'} is writable by all users" in warnings_logged[1]


def test_a_private_home_or_one_of_the_users_own_group_is_not_warned_about(tmp_path, warnings_logged):
    tether.Tether(home=tmp_path / "fresh")
    shared = tmp_path / "own-group"
    shared.mkdir()
    os.chown(shared, -1, os.getegid())
    shared.chmod(0o775)  # umask 002 where each user has a group of their own
    tether.Tether(home=shared)
    assert warnings_logged == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_home_owned_by_another_user_is_warned_about(tmp_path, warnings_logged):
    home = tmp_path / "theirs"
    home.mkdir()
    os.chown(home, 4242, -1)
    tether.Tether(home=home)
    assert any(f"home folder {home} is owned by another user (uid 4242)" in w for w in warnings_logged)


def _run(home: Path, code: str) -> str:
    """In a child process: a read that hangs on a FIFO fails the test by its timeout, not the suite."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "TETHER_HOME": str(home)})
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_a_fifo_or_link_planted_as_the_listing_index_is_not_read(client, outside):
    client.create_session(title="mine")
    index = sessions_dir(client) / ".index.json"
    index.unlink(missing_ok=True)
    os.mkfifo(index)
    assert _run(client.home, "import tether; print([s.title for s in tether.Tether().list_sessions()])") == "['mine']"
    index.unlink(missing_ok=True)
    outside.write_text('{"version": 1, "entries": {}}')
    index.symlink_to(outside)
    assert _run(client.home, "import tether; print([s.title for s in tether.Tether().list_sessions()])") == "['mine']"
    assert outside.read_text() == '{"version": 1, "entries": {}}'  # rewritten in place of the link, not through it


def test_the_quick_resume_never_reads_through_a_link_or_from_a_fifo(client, outside):
    sid = client.create_session(title="linked")
    path = sessions_dir(client) / f"{sid}.jsonl"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    code = f"from tether.cli_util import quick_resume; from pathlib import Path; print(quick_resume(Path({str(client.home)!r}), {sid!r}, cont=False))"
    assert _run(client.home, code) == "None"  # the full load then names the link
    path.unlink()
    os.mkfifo(path)
    assert _run(client.home, code) == "None"
