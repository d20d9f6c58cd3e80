"""Real processes against one session file: concurrent appends and SIGKILL at random moments."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import tether

WRITER = r"""
import sys, tether
home, sid, tag, n, compact_every = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
c = tether.Tether(home=home)
i = 0
while n < 0 or i < n:
    c.add_message(sid, "user", f"{tag}:{i}")
    sys.stdout.write(f"{tag}:{i}\n"); sys.stdout.flush()   # acknowledged: the append returned
    if compact_every and i % compact_every == compact_every - 1:
        c.rename_session(sid, f"title {i}")
        c.store.compact(sid)
    i += 1
"""


def spawn(home, sid, tag, n, compact_every=0):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home), sid, tag, str(n), str(compact_every)],
        stdout=subprocess.PIPE, text=True,
    )


def run_writers(home, c, sid: str, writers: int, n: int, compact_every: int = 0) -> list[str]:
    """Run `writers` processes of n appends each at once; every message is stored once, and
    each writer's messages keep their order. Returns the session's contents."""
    procs = [spawn(home, sid, f"p{k}", n, compact_every) for k in range(writers)]
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0
        assert len(out.splitlines()) == n
    contents = [m.content for m in c.load_session(sid).messages]
    assert len(contents) == writers * n and len(set(contents)) == writers * n
    for k in range(writers):
        assert [int(x.split(":")[1]) for x in contents if x.startswith(f"p{k}:")] == list(range(n))
    return contents


def test_eight_processes_append_concurrently_without_loss(tether_home):
    c = tether.Tether()
    sid = c.create_session(title="race")
    run_writers(tether_home, c, sid, 8, 250)
    assert c.list_sessions()[0].message_count == 2000


def test_appends_follow_other_processes_compacting_the_file(tether_home):
    """Each writer compacts (rewrite + rename) every 10 appends while the others append:
    an append that waited on the old file's lock must land in the new file."""
    c = tether.Tether()
    sid = c.create_session()
    run_writers(tether_home, c, sid, 4, 120, compact_every=10)


def test_an_append_waiting_on_a_replaced_file_follows_it_even_if_the_old_one_has_a_link(tether_home):
    """A backup's hard link keeps the replaced file alive (link count 1): the append that
    waited on its lock must still go to the session's new file, not to the orphan."""
    import fcntl

    from tether.sessions.jsonl import write_atomic

    c = tether.Tether()
    sid = c.create_session()
    c.add_message(sid, "user", "first")
    path = c.store.path(sid)
    os.link(path, path.with_name("backup-of-session"))
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a compaction holds the old file's lock...
    done = threading.Event()
    t = threading.Thread(target=lambda: (tether.Tether().add_message(sid, "user", "second"), done.set()))
    t.start()
    time.sleep(0.2)
    assert not done.is_set()  # ...so the append waits
    write_atomic(path, path.read_bytes())  # ...renames the rewritten file into place...
    os.close(fd)  # ...and lets go
    t.join(timeout=10)
    assert done.is_set()
    assert [m.content for m in c.load_session(sid).messages] == ["first", "second"]


def test_threads_append_concurrently_without_loss(tether_home):
    c = tether.Tether()
    sid = c.create_session()

    def work(k: int) -> None:
        client = tether.Tether()  # one client per thread, as an app with a pool would have
        for i in range(50):
            client.add_message(sid, "user", f"t{k}:{i}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    contents = [m.content for m in c.load_session(sid).messages]
    assert len(contents) == 400 and len(set(contents)) == 400
    for k in range(8):
        assert [int(x.split(":")[1]) for x in contents if x.startswith(f"t{k}:")] == list(range(50))


def test_sigkill_never_loses_acknowledged_messages(tether_home):
    c = tether.Tether()
    sid = c.create_session()
    rng = random.Random(1234)
    acked: list[str] = []
    for round_ in range(20):
        p = spawn(tether_home, sid, f"r{round_}", -1, compact_every=7)
        first = p.stdout.readline()  # wait until it is really appending
        assert first
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(p.pid, signal.SIGKILL)
        rest, _ = p.communicate()
        acked += [first.strip()] + [ln for ln in rest.splitlines() if ln.endswith(tuple("0123456789"))]
        s = c.load_session(sid)  # must always load
        stored = [m.content for m in s.messages]
        missing = set(acked) - set(stored)
        assert not missing, f"round {round_}: lost {sorted(missing)[:5]}"
        assert len(stored) == len(set(stored)), "a message was stored twice"
        assert c.list_sessions()[0].message_count == len(stored)
    # and the file is still writable after all that
    c.add_message(sid, "user", "survivor")
    assert c.load_session(sid).messages[-1].content == "survivor"
    assert len(acked) > 40
