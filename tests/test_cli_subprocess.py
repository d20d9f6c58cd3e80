"""The real `tether` executable in child processes with a temp TETHER_HOME, and the chat in a
pseudo-terminal. Commands that call a model pay litellm's import each, so they are few."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tether import Tether

TETHER = str(Path(sys.executable).parent / "tether")


def env(home: Path, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    e.update(TETHER_HOME=str(home), PROMPT_TOOLKIT_NO_CPR="1", **extra)
    return e


def quit_chat(child) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-D at the chat's prompt, and the process gone."""
    import pexpect

    child.expect("›")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def only_session_history() -> list:
    """The messages of the one session the test's chat made (it fails if there is not one)."""
    (s,) = Tether().list_sessions()
    return Tether().get_history(s.id)


def tether(home: Path, *args: str, input: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([TETHER, *args], input=input, capture_output=True, text=True, env=env(home), timeout=120)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    return p


PROBE = """
import sys
from tether.cli import main
try:
    main(sys.argv[1:], prog_name="tether")
except SystemExit as e:
    code = e.code
print("LOADED", "litellm" in sys.modules, "pydantic" in sys.modules, "tether.turn.core" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize("args,pydantic_ok", [
    (["--help"], False), (["sessions", "--help"], False), (["config"], False), (["sessions", "list"], False),
    (["sessions", "list", "--json"], True),
])
def test_light_commands_never_import_litellm(tether_home, args, pydantic_ok):
    Tether().create_session(title="one")  # so the listing has a row to show
    Tether().list_sessions()  # and the store's index is current
    p = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env(tether_home),
                       timeout=60)
    loaded = p.stderr.strip().splitlines()[-1].split()
    assert loaded[0] == "LOADED" and loaded[1] == "False", p.stderr  # litellm
    assert loaded[3] == "False"  # nor the router's call path
    if not pydantic_ok:
        assert loaded[2] == "False"


def test_session_commands_as_processes(tether_home, tmp_path):
    t = Tether()
    sid = t.create_session(title="Process test", model="tether/echo")
    t.add_message(sid, "user", "find the word pineapple")
    t.add_message(sid, "assistant", "ok")
    assert "sessions" in tether(tether_home, "--help").stdout
    assert sid in tether(tether_home, "sessions", "list").stdout
    assert json.loads(tether(tether_home, "sessions", "list", "--json").stdout)[0]["id"] == sid
    assert "pineapple" in tether(tether_home, "sessions", "show", sid).stdout
    assert "pineapple" in tether(tether_home, "sessions", "search", "PINEAPPLE").stdout
    tether(tether_home, "sessions", "rename", sid, "Renamed")
    out = tmp_path / "s.json"
    tether(tether_home, "sessions", "export", sid, "-o", str(out))
    assert json.loads(out.read_text())["title"] == "Renamed"
    tether(tether_home, "sessions", "delete", sid)  # not a terminal: no question
    assert sid not in tether(tether_home, "sessions", "list").stdout
    assert sid in tether(tether_home, "sessions", "import", str(out)).stdout
    assert "tether/echo" in tether(tether_home, "config").stdout
    p = tether(tether_home, "sessions", "show", "missing", check=False)
    assert p.returncode == 1 and p.stderr == "tether: error: no session with id 'missing'\n"
    p = subprocess.run([TETHER, "--debug", "sessions", "show", "missing"], capture_output=True, text=True,
                       env=env(tether_home), timeout=60)
    assert p.returncode == 1 and "Traceback" in p.stderr


def test_ask_streams_continues_and_reads_stdin(tether_home):
    p = tether(tether_home, "ask", "hello")
    assert p.stdout == "echo: hello [1 messages, 8 tokens]\n"
    p = tether(tether_home, "ask", "-c", "and:", input="piped\n")
    assert p.stdout.startswith("echo: and:\n\npiped") and "3 messages" in p.stdout
    (s,) = Tether().list_sessions()
    assert s.message_count == 4


def test_the_turn_is_saved_when_stdout_closes_early(tether_home):
    """`tether ask ... | head -1` and the reader is gone before the answer: the answer is still saved whole."""
    r, w = os.pipe()
    os.close(r)  # nobody will read: every write gets EPIPE
    proc = subprocess.run([TETHER, "ask", "a question nobody reads"], stdout=w, stderr=subprocess.PIPE, text=True,
                          env=env(tether_home), timeout=120)
    os.close(w)
    assert "Traceback" not in proc.stderr and proc.returncode == 0, proc.stderr
    msgs = only_session_history()
    assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "ok")]
    assert msgs[1].content.startswith("echo: a question nobody reads [")


def test_the_turn_is_saved_when_there_is_no_stdout_at_all(tether_home):
    """`tether ask ... >&-`: Python starts with sys.stdout = None; the answer is still saved whole."""
    proc = subprocess.run([TETHER, "ask", "nobody hears this"], stderr=subprocess.PIPE, text=True,
                          env=env(tether_home), timeout=120, preexec_fn=lambda: os.close(1))
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr and proc.returncode == 0, proc.stderr
    msgs = only_session_history()
    assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "ok")]
    assert msgs[1].content.startswith("echo: nobody hears this [")


def test_ask_against_the_local_server_with_fallback(tether_home):
    from fakeserver import FakeServer

    from test_cli import write_config

    srv = FakeServer().start()
    try:
        write_config(tether_home, srv)
        srv.always["main"] = "500"
        p = tether(tether_home, "ask", "--json", "route me")
        data = json.loads(p.stdout)
        assert data["model"] == "backup" and data["fallback_from"] == "main"
        assert data["text"] == "backup says: route me (1 messages)"
        assert "main failed (server 500); backup answered instead" in p.stderr
        out = tether(tether_home, "models").stdout
        assert "main *" in out and "openai/backup" in out and "16,000" in out
    finally:
        srv.stop()


def test_chat_in_a_real_terminal_then_resume(tether_home):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(TETHER, ["chat"], env=env(tether_home), encoding="utf-8", timeout=60, dimensions=(40, 120))
    try:
        child.expect("No model configured")  # the one-line hint for a fresh install
        child.expect("›")
        child.send("hello from a pty\r")
        child.expect("echo: hello from a pty")
        quit_chat(child)
    finally:
        child.close()
    assert child.exitstatus == 0
    (s,) = Tether().list_sessions()
    assert [m.role for m in Tether().get_history(s.id)] == ["user", "assistant"]

    child = pexpect.spawn(TETHER, ["chat", "-c"], env=env(tether_home), encoding="utf-8", timeout=60,
                          dimensions=(40, 120))
    try:
        child.expect("No model configured")  # the hint first, not between the resumed turns and the prompt
        child.expect(f"session {s.id} · hello from a pty · last used just now")
        child.expect("hello from a pty")  # the last turns, shown before the prompt
        child.expect("›")
        child.send("/exit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_ctrl_c_in_a_real_terminal_stops_a_waiting_answer_and_the_chat_goes_on(tether_home):
    """A real SIGINT while the model has not answered yet (the fake server hangs): the
    question stays saved as unanswered and the next message on another model works."""
    pexpect = pytest.importorskip("pexpect")
    from fakeserver import FakeServer

    from test_cli import write_config

    srv = FakeServer().start()
    srv.always["main"] = "hang"
    write_config(tether_home, srv)
    child = pexpect.spawn(TETHER, ["chat"], env=env(tether_home), encoding="utf-8", timeout=60, dimensions=(40, 120))
    try:
        child.expect("›")
        child.send("are you there?\r")
        child.expect("are you there")
        while not srv.calls("main"):  # the request reached the model: now we are mid-answer
            child.expect([pexpect.TIMEOUT], timeout=0.1)
        child.sendintr()
        child.expect("interrupted: no answer yet")
        child.expect("›")
        child.send("/model backup\r")
        child.expect("pinned to backup")
        child.expect("›")
        child.send("still usable?\r")
        child.expect("backup says: still usable")
        quit_chat(child)
    finally:
        child.close()
        srv.stop()
    msgs = only_session_history()
    assert [(m.role, m.status) for m in msgs] == [("user", "unanswered"), ("user", "ok"), ("assistant", "ok")]


def test_a_chat_that_quits_while_litellm_loads_exits(tmp_path):
    """Quitting at once used to kill the background loader mid-import; litellm's finalizers
    then waited for the import lock for ever (most runs hung). Three chats side by side."""
    procs = []
    for k in range(3):
        home = tmp_path / f"h{k}"
        procs.append(subprocess.Popen([TETHER, "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env(home)))
    for p in procs:
        try:
            _out, err = p.communicate("/model tether/echo\n/exit\n", timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            pytest.fail("`tether chat` did not exit after /exit")
        assert p.returncode == 0 and "Traceback" not in err, err


def test_a_piped_chat_puts_errors_on_stderr_and_fails_when_a_turn_did(tether_home):
    tether_home.mkdir(parents=True, exist_ok=True)
    (tether_home / "config.toml").write_text(
        'default_model = "dead"\n[models.dead]\nmodel = "openai/dead"\napi_base = "http://127.0.0.1:9/v1"\n'
        'api_key = "sk-x"\nretries = 0\ntimeout = 2\n')
    p = tether(tether_home, "chat", input="hello\n", check=False)
    assert p.returncode == 1
    assert "every model failed" in p.stderr and "every model failed" not in p.stdout
    ok_run = tether(tether_home, "chat", "-m", "tether/echo", input="hello\n")
    assert ok_run.returncode == 0 and "echo: hello" in ok_run.stdout


def test_showing_a_long_session_into_head_exits_cleanly(tether_home):
    t = Tether(home=tether_home)
    sid = t.create_session(title="long")
    for i in range(300):
        t.add_message(sid, "user", f"line {i} " * 20)
    p = subprocess.run(f"{TETHER} sessions show {sid} | head -1; exit ${{PIPESTATUS[0]}}", shell=True,
                       executable="/bin/bash", capture_output=True, text=True, env=env(tether_home), timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("id:") and "Traceback" not in p.stderr


def test_a_piped_chat_writes_only_answers_to_stdout_even_after_a_restart(tether_home):
    from fakeserver import FakeServer

    from test_cli import write_config

    srv = FakeServer().start()
    try:
        write_config(tether_home, srv)
        srv.fail("main", "cut")
        p = tether(tether_home, "chat", input="first\n")
        assert p.stdout == "backup says: first (1 messages)\n"  # not main's cut text, not notices
        assert p.stderr.count("main failed mid-answer (the connection dropped)") == 1
        assert "answered instead" not in p.stderr  # the restart notice said it already
    finally:
        srv.stop()


def test_chat_into_a_pipe_keeps_the_prompt_on_the_terminal(tether_home, tmp_path):
    """`tether chat | tee log`: the line editor drew its prompt and toolbar into the pipe, so
    the terminal showed nothing to type at and the log filled with screen drawing."""
    pexpect = pytest.importorskip("pexpect")
    import shlex

    out = tmp_path / "answers.txt"
    child = pexpect.spawn("bash", ["-c", f"{shlex.quote(TETHER)} chat | cat > {shlex.quote(str(out))}"],
                          env=env(tether_home), encoding="utf-8", timeout=60, dimensions=(40, 120))
    try:
        child.expect("›")  # drawn on the terminal (stderr)
        child.send("hello there\r")
        for _ in range(600):  # the answer reaches the pipe before the next prompt is drawn
            if out.exists() and "echo: hello there" in out.read_text():
                break
            child.expect([pexpect.TIMEOUT], timeout=0.05)
        quit_chat(child)
    finally:
        child.close()
    assert out.read_text().startswith("echo: hello there")
    assert "›" not in out.read_text() and "\x1b" not in out.read_text()


class DripServer:
    """The fake server, its streams sending one word every `delay` seconds (an answer that takes a while)."""

    def __new__(cls, delay: float):
        from fakeserver import FakeServer

        class Drip(FakeServer):
            def _stream(self, h, *a, **kw):
                flush = h.wfile.flush

                def slow_flush() -> None:
                    flush()
                    time.sleep(delay)

                h.wfile.flush = slow_flush
                try:
                    super()._stream(h, *a, **kw)
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (Ctrl-C)
                    pass

        return Drip()


def test_keys_typed_while_an_answer_streams_wait_for_the_next_prompt_unechoed(tether_home):
    """The terminal echoed keys typed during an answer (and Ctrl-C's `^C`) into the live
    answer, whose redrawing then duplicated lines; they now appear at the next prompt only."""
    pexpect = pytest.importorskip("pexpect")
    from test_cli import write_config

    srv = DripServer(0.04).start()
    write_config(tether_home, srv)
    srv.fixed["main"] = " ".join(f"word{i}" for i in range(50))
    child = pexpect.spawn(TETHER, ["chat"], env=env(tether_home), encoding="utf-8", timeout=60, dimensions=(40, 120))
    try:
        child.expect("›")
        child.send("story\r")
        child.expect("word5 ")
        child.send("typed ahead")
        child.expect("word49")
        answer = child.before
        child.expect("›")
        answer += child.before
        assert "typed ahead" not in answer  # not echoed inside the answer
        child.expect("typed ahead")  # but waiting in the next prompt
        srv.fixed.clear()
        child.send("\r")
        child.expect("main says: typed ahead")
        srv.fixed["main"] = " ".join(f"word{i}" for i in range(50))
        child.expect("›")
        child.send("again\r")
        child.expect("word5 ")
        child.send("kept")
        child.sendintr()  # stops the answer, not what was typed
        child.expect("interrupted: the partial answer is saved")
        assert "^C" not in child.before and "kept" not in child.before
        child.expect("›")
        child.expect("kept")
        srv.fixed.clear()
        child.send("\r")
        child.expect("main says: kept")
        quit_chat(child)
    finally:
        child.close()
        srv.stop()
    users = [m.content for m in only_session_history() if m.role == "user"]
    assert users == ["story", "typed ahead", "again", "kept"]


def test_chat_into_tee_shows_progress_and_outlives_ctrl_c_killing_tee(tether_home, tmp_path):
    """`tether chat | tee log`: the terminal stayed blank while an answer was held for the
    pipe, and Ctrl-C, which ends tee too, then ended the chat silently (broken pipe, status 0)."""
    pexpect = pytest.importorskip("pexpect")
    import shlex

    from test_cli import write_config

    srv = DripServer(0.04).start()
    write_config(tether_home, srv)
    srv.fixed["main"] = " ".join(f"word{i}" for i in range(80))
    log = tmp_path / "log.txt"
    child = pexpect.spawn("bash", ["-c", f"{shlex.quote(TETHER)} chat | tee {shlex.quote(str(log))}"],
                          env=env(tether_home), encoding="utf-8", timeout=60, dimensions=(40, 120))
    try:
        child.expect("›")
        child.send("long one\r")
        child.expect("answering… [0-9,]+ characters")  # progress on the terminal while the pipe waits
        child.logfile_read = seen = io.StringIO()
        child.sendintr()  # ends tee as well
        # the partial answer shows here too, unless tee took it from the pipe just before it died
        # (on a loaded machine it lives that long): either way it is saved, as checked below
        child.expect("interrupted: the partial answer is saved")
        child.expect("›")
        srv.fixed.clear()
        child.send("still there?\r")
        child.expect("main says: still there")  # answers now come to the terminal...
        quit_chat(child)
    finally:
        child.close()
        srv.stop()
    assert "stdout closed: answers are shown here" in seen.getvalue()  # ...and the chat said why
    assert "Traceback" not in seen.getvalue()
    msgs = only_session_history()
    assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "interrupted"), ("user", "ok"),
                                                  ("assistant", "ok")]


def test_ask_with_a_latin1_file_on_stdin_sends_its_bad_bytes_as_replacement_characters(tether_home):
    """`printf 'caf\\xe9' | tether ask ...` read stdin in the locale's encoding: lone surrogates,
    stored, then every model failed to encode them and the turn failed as "server (500)"."""
    from fakeserver import FakeServer

    from test_cli import write_config

    srv = FakeServer().start()
    try:
        write_config(tether_home, srv)
        p = subprocess.run([TETHER, "ask", "translate this"], input="café crème\n".encode("latin-1"),
                           capture_output=True, env=env(tether_home, LC_ALL="C.UTF-8"), timeout=120)
    finally:
        srv.stop()
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "main says: translate this\n\ncaf\ufffd cr\ufffdme (1 messages)\n"
    assert p.stderr.decode().splitlines()[0] == "tether: 2 bytes of stdin are not UTF-8: sent as \ufffd"
    assert only_session_history()[0].content == "translate this\n\ncaf\ufffd cr\ufffdme"


def test_ask_and_chat_with_stdin_closed(tether_home):
    """`tether ask q <&-` and `tether chat <&-`: Python starts with sys.stdin = None, and both
    ended in `AttributeError: 'NoneType' object has no attribute 'isatty'`."""
    def closed_stdin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TETHER, *args], capture_output=True, text=True, env=env(tether_home), timeout=120,
                              preexec_fn=lambda: os.close(0))

    p = closed_stdin("ask", "nothing piped")
    assert p.returncode == 0 and p.stdout.startswith("echo: nothing piped [1 messages"), p.stderr
    p = closed_stdin("chat")
    empty = subprocess.run([TETHER, "chat"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=env(tether_home), timeout=120)
    assert (p.returncode, p.stdout, p.stderr) == (empty.returncode, empty.stdout, empty.stderr) == (0, "", p.stderr)
    assert "Traceback" not in p.stderr and "error" not in p.stderr
    sid = Tether().create_session(title="doomed")
    p = closed_stdin("sessions", "delete", sid)  # no one to ask: deleted as in a script
    assert p.returncode == 0 and p.stdout.strip() == f"deleted {sid}", p.stderr



def test_ask_in_a_terminal_says_what_it_waits_for(tether_home):
    """The terminal stayed blank until the first piece arrived (up to the timeout)."""
    pexpect = pytest.importorskip("pexpect")
    from test_cli import write_config

    srv = DripServer(0.04).start()
    write_config(tether_home, srv)
    srv.fail("main", "slow:2")
    child = pexpect.spawn(TETHER, ["ask", "take your time"], env=env(tether_home), encoding="utf-8", timeout=60,
                          dimensions=(20, 100))
    try:
        child.expect("waiting for main… [0-9]s")
        child.expect("main says: take your time")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        srv.stop()
    assert child.exitstatus == 0


def test_ctrl_c_during_ask_names_the_session_holding_the_partial_answer(tether_home):
    """Ctrl-C printed only "tether: interrupted": the saved partial answer's session went unsaid."""
    pexpect = pytest.importorskip("pexpect")
    from test_cli import write_config

    srv = DripServer(0.04).start()
    write_config(tether_home, srv)
    srv.fixed["main"] = " ".join(f"word{i}" for i in range(80))
    child = pexpect.spawn(TETHER, ["ask", "stream me"], env=env(tether_home), encoding="utf-8", timeout=60,
                          dimensions=(20, 200))
    try:
        child.expect("word5 ")
        child.sendintr()
        child.expect(r"tether: interrupted: the partial answer is saved in session (\w+) ")
        sid = child.match.group(1)
        child.expect(pexpect.EOF)
    finally:
        child.close()
        srv.stop()
    assert child.exitstatus == 130
    msgs = Tether().get_history(sid)
    assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "interrupted")]
    assert msgs[1].content.startswith("word0 word1 word2 word3 word4 word5")
