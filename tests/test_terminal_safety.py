"""Text from a model, an imported file or a provider is drawn, never obeyed: an ESC in a reply
or a title must not set the clipboard (OSC 52), retitle the window or move the cursor."""
from __future__ import annotations

import io
import json

from click.testing import CliRunner

from tether import Tether
from tether._text import printable
from tether.cli import main
from tether.render import AnswerView, make_console, print_transcript

from replkit import chat

HOSTILE = "hi \x1b]52;c;ZWNobyBwd25lZA==\x07 \x1b]0;PWNED\x07 \x9b2J \x1b[31mred\rX\x7f"
RAW = ("\x1b", "\x07", "\x9b", "\r", "\x7f")


def clean(text: str) -> bool:
    return not any(c in text for c in RAW)


def test_printable_shows_controls_keeps_text_and_folds_one_line_fields():
    assert printable(HOSTILE) == "hi ␛]52;c;ZWNobyBwd25lZA==␇ ␛]0;PWNED␇ \ufffd2J ␛[31mredX␡"
    assert printable("line\r\n\ttab 漢字 🙂 مرحبا") == "line\n\ttab 漢字 🙂 مرحبا"
    assert printable("a\n b\t\u202eevil\u2066c", one_line=True) == "a b evilc"


def test_ask_draws_a_hostile_reply_but_json_keeps_it():
    r = CliRunner().invoke(main, ["ask", HOSTILE])
    assert r.exit_code == 0, r.output
    assert clean(r.stdout) and "␛]52;c;" in r.stdout
    r = CliRunner().invoke(main, ["ask", "--json", HOSTILE])
    assert "\x1b]52;c;" in json.loads(r.stdout)["text"]  # data output is the text as stored


def test_session_listing_show_and_search_draw_hostile_titles_on_one_row():
    t = Tether()
    sid = t.create_session(title="evil\x1b]0;PWNED\x07\nsecond line\u202e", model="tether/echo")
    t.add_message(sid, "user", "evil question")
    t.add_message(sid, "assistant", HOSTILE)
    run = CliRunner().invoke
    listing = run(main, ["sessions", "list"]).stdout
    assert clean(listing) and "\u202e" not in listing
    assert [ln for ln in listing.splitlines() if sid in ln][0].count("second line") == 1  # one row
    for args in (["sessions", "show", sid], ["sessions", "search", "evil"], ["sessions", "export", sid, "-f", "markdown"]):
        out = run(main, args).stdout
        assert clean(out) and "␛" in out, args
    assert t.load_session(sid).messages[-1].content == HOSTILE  # only the drawing changed


def test_the_chat_draws_a_hostile_live_answer_and_transcript(tether_home, fake_server):
    from conftest import router_config

    fake_server.reset()
    fake_server.fixed["main"] = HOSTILE
    with chat(tether_home, config=router_config(fake_server)) as c:
        out = c.run("say it\r")
        assert "red" in out and clean(out)
    buf = io.StringIO()
    print_transcript(make_console(file=buf, force_terminal=True), c.messages(), heading="resumed")
    drawn = buf.getvalue().replace("\x1b[", "")  # rich's own styling, not the reply's
    assert "␛]52;c;" in drawn and "\x1b]" not in drawn and "\x07" not in drawn


def test_a_live_answer_on_a_terminal_shows_the_escape():
    buf = io.StringIO()
    view = AnswerView(make_console(file=buf, force_terminal=True))
    view.start()
    view.add("ok \x1b]52;c;eA==\x07")
    view.finish()
    assert "␛]52;c;eA==␇" in buf.getvalue() and "\x1b]52" not in buf.getvalue()


def test_the_waiting_line_draws_a_hostile_model_name():
    """The status line names models, and an imported session's pin can be any text."""
    from tether.progress import Progress
    from tether.render import _Answer

    evil = "waiting for openai/x\x1b]52;c;ZXZpbA==\x1b\\"
    for line in (lambda con: _Answer("", status=lambda: evil), lambda con: Progress(con, lambda: evil)):
        buf = io.StringIO()
        con = make_console(file=buf, force_terminal=True)
        con.print(line(con))  # what Live redraws a few times a second
        assert "\x1b]52" not in buf.getvalue() and "␛]52" in buf.getvalue()


def test_json_output_keeps_the_text_whole_and_the_terminal_safe():
    """JSON to stdout is data (`export > backup.json` is re-imported): DEL and C1 characters,
    which json leaves raw, were drawn as ␡/� and the backup silently changed."""
    t = Tether()
    text = "a\x7fb\x85c\x9bd\x1be"
    sid = t.create_session(title=text)
    t.add_message(sid, "user", text)
    run = CliRunner().invoke
    for args in (["sessions", "show", sid, "--json"], ["sessions", "export", sid], ["sessions", "list", "--json"],
                 ["sessions", "search", "a", "--json"]):
        out = run(main, args).stdout
        assert clean(out) and "\x85" not in out, args
        doc = json.loads(out)
        row = doc[0] if isinstance(doc, list) else doc
        assert row["title"] == text, args
    doc = json.loads(run(main, ["sessions", "export", sid]).stdout)
    doc["id"] = "restored"
    assert Tether().load_session(Tether().import_session(doc)).messages[0].content == text
