"""Edge cases of the window: tool calls kept whole, cache keys, turn groups, tiny budgets."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tether.context import build_window
from tether.context.items import History
from tether.sessions import Message


def ids(w: Any) -> list[str]:
    return [m["id"] if isinstance(m, dict) else m.id for m in w.messages]


def assert_tool_calls_whole(messages: list[dict[str, Any]]) -> None:
    """What OpenAI accepts: each tool result follows the call that asked for it, and each
    call's results all follow it before anything else."""
    pending: set[str] = set()
    for m in messages:
        if m["role"] == "tool":
            assert m["tool_call_id"] in pending, f"tool result {m['tool_call_id']} without its call"
            pending.discard(m["tool_call_id"])
            continue
        assert not pending, f"calls {sorted(pending)} without their results"
        pending = {c["id"] for c in m.get("tool_calls") or []}
    assert not pending, f"calls {sorted(pending)} without their results"


def call(cid: str, arg_words: int) -> list[dict[str, Any]]:
    args = json.dumps({"query": "word " * arg_words})
    return [{"id": cid, "type": "function", "function": {"name": "search", "arguments": args}}]


def tool_turn(k: int, arg_words: int = 150, result_words: int = 10, answer_words: int = 400) -> list[dict[str, Any]]:
    return [
        {"id": f"u{k}", "role": "user", "content": f"look up item {k}"},
        {"id": f"c{k}", "role": "assistant", "content": "", "tool_calls": call(f"call_{k}", arg_words)},
        {"id": f"t{k}", "role": "tool", "content": "result " * result_words, "tool_call_id": f"call_{k}"},
        {"id": f"a{k}", "role": "assistant", "content": "answer " * answer_words},
    ]


@pytest.mark.parametrize("budget", [60, 100, 150, 200, 300, 500])
def test_a_tool_call_is_never_sent_without_its_result_or_the_other_way(budget: int) -> None:
    """When even the newest turn does not fit, its messages are taken newest first: a tool
    result must not come without the call that asked for it (OpenAI rejects that request)."""
    w = build_window(tool_turn(0), "thanks", budget_tokens=budget, model="gpt-4o")
    assert w.tokens <= budget
    assert_tool_calls_whole([m for m in w.to_messages() if m["role"] != "system"])
    assert "a0" in ids(w), "the newest answer (shortened) still goes"


@pytest.mark.parametrize("unit", ["pair", "message"])
def test_relevance_fill_keeps_tool_calls_whole(unit: str) -> None:
    hist: list[dict[str, Any]] = []
    for k in range(30):
        hist += tool_turn(k, arg_words=20, result_words=30 if k != 7 else 5, answer_words=20)
    hist[4 * 7 + 2]["content"] = "the zebra exhibit opens in May"  # the result to find
    w = build_window(hist, "when does the zebra exhibit open?", budget_tokens=400, model="gpt-4o", unit=unit)
    assert "t7" in ids(w)
    assert_tool_calls_whole([m for m in w.to_messages() if m["role"] != "system"])


def test_a_role_or_name_edit_is_seen_by_the_column_cache() -> None:
    hist = [{"id": "x1", "role": "user", "content": "hello there"},
            {"id": "x2", "role": "assistant", "content": "general kenobi"}]
    before = build_window(hist, "q", budget_tokens=10_000).tokens
    hist[1]["name"] = "obi_wan"  # a name is sent, so it costs tokens
    assert build_window(hist, "q", budget_tokens=10_000).tokens > before
    hist[1]["role"] = "user"
    assert History.of(hist, "cl100k_base").groups == [(0, 1), (1, 2)]
    # a session's messages: a role changed by the store comes back as a new object, same id and text
    msgs = [Message(role="user", content="hello there"), Message(role="assistant", content="general kenobi")]
    assert History.of(msgs, "cl100k_base").groups == [(0, 2)]
    msgs[1] = Message(id=msgs[1].id, role="user", content="general kenobi")
    assert History.of(msgs, "cl100k_base").groups == [(0, 1), (1, 2)]


def test_histories_without_ids_that_open_alike_do_not_share_columns() -> None:
    a = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    b = [{"role": "user", "content": "hi"}, {"role": "user", "content": "hello", "name": "someone_else"}]
    History.of(a, "cl100k_base")
    hb = History.of(b, "cl100k_base")
    assert hb.roles == ["user", "user"] and hb.names == [None, "someone_else"]
    assert hb.groups == [(0, 1), (1, 2)]


def test_a_system_note_inside_a_turn_keeps_the_question_with_its_answer() -> None:
    hist: list[dict[str, Any]] = []
    for k in range(40):
        hist.append({"id": f"u{k}", "role": "user", "content": f"tell me about topic {k} please"})
        if k == 5:
            hist.append({"id": "s5", "role": "system", "content": "The user attached a file."})
        hist.append({"id": f"a{k}", "role": "assistant", "content": f"here is something on topic {k}"})
    h = History.of(hist, "cl100k_base")
    assert (10, 13) in h.groups, "question, system note and answer are one turn"
    # a system message between turns still opens a turn of its own
    hist2 = hist[:2] + [{"id": "s", "role": "system", "content": "Be brief."}] + hist[2:]
    assert History.of(hist2, "cl100k_base").groups[:3] == [(0, 2), (2, 3), (3, 5)]
    w = build_window(hist, "the zebra answer", budget_tokens=60)
    assert ids(w)[0].startswith("u"), ids(w)


def test_a_tiny_budget_keeps_the_question_when_its_answer_cannot_come() -> None:
    """The newest answer is oversized and its question and a useful cut of it do not fit
    together: the question alone is better than an empty window."""
    hist = [{"id": "u", "role": "user", "content": "what is in the report?"},
            {"id": "a", "role": "assistant", "content": "word " * 500}]
    for budget in (16, 20, 25):
        w = build_window(hist, "and then?", budget_tokens=budget)
        assert ids(w) == ["u"] and w.tokens <= budget, (budget, ids(w))


def test_embeddings_requested_without_the_extra_says_so(caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.context import embeddings

    monkeypatch.setattr(embeddings, "available", lambda: False)
    monkeypatch.setattr(embeddings, "_warned", False, raising=False)
    hist = [{"id": f"m{k}", "role": "user" if k % 2 == 0 else "assistant", "content": f"note {k} " * 30}
            for k in range(40)]
    with caplog.at_level(logging.WARNING, logger="tether"):
        build_window(hist, "note 3", budget_tokens=200, embeddings=True)
        build_window(hist, "note 5", budget_tokens=200, embeddings=True)
    said = [r for r in caplog.records if "tether[embeddings]" in r.getMessage()]
    assert len(said) == 1, "said once, not per turn"


def test_random_histories_with_tool_calls_stay_sendable_and_within_budget() -> None:
    import random

    rng = random.Random(7)
    words = "zebra lake kayak report budget coffee train garden violin".split()
    for case in range(150):
        hist: list[dict[str, Any]] = []
        for k in range(rng.randint(1, 25)):
            if rng.random() < 0.4:
                turn = tool_turn(k, rng.randint(0, 80), rng.randint(0, 300), rng.randint(0, 300))
                if rng.random() < 0.3:  # two calls answered in one go
                    turn[1]["tool_calls"] = turn[1]["tool_calls"] + call(f"call_{k}b", 5)
                    turn.insert(3, {"id": f"t{k}b", "role": "tool", "content": "more", "tool_call_id": f"call_{k}b"})
                hist += turn
            else:
                hist.append({"id": f"u{k}", "role": "user", "content": " ".join(rng.choices(words, k=rng.randint(1, 200)))})
                hist.append({"id": f"a{k}", "role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(1, 200)))})
        if rng.random() < 0.3:
            rng.choice(hist)["pinned"] = True
        budget = rng.choice([10, 30, 60, 120, 250, 600, 1500])
        w = build_window(hist, " ".join(rng.choices(words, k=3)), budget_tokens=budget, model="gpt-4o",
                         unit=rng.choice(["pair", "message"]))
        assert w.tokens <= budget, (case, w.tokens, budget)
        assert_tool_calls_whole([m for m in w.to_messages(markers=False) if m["role"] != "system"])


def test_columns_extended_turn_by_turn_equal_columns_built_afresh() -> None:
    """The cached columns grow with the session (groups extended, not rebuilt): each step must
    give what a new process would."""
    import random

    import tether.context.items as items

    rng = random.Random(3)
    hist: list[dict[str, Any]] = []
    for k in range(120):
        role = rng.choice(["user", "user", "assistant", "assistant", "system", "tool"])
        msg: dict[str, Any] = {"id": f"m{k}", "role": role, "content": f"message {k}"}
        if role == "assistant" and rng.random() < 0.3:
            msg["tool_calls"] = call(f"c{k}", 2)
        hist.append(msg)
        grown = History.of(hist, "cl100k_base")
        items._CACHE.clear()
        fresh = History.of(hist, "cl100k_base")
        assert (grown.groups, grown.group_of, grown.atom_start, grown.tokens, grown.cum[:k + 2]) == (
            fresh.groups, fresh.group_of, fresh.atom_start, fresh.tokens, fresh.cum[:k + 2]), k
        if k % 7 == 0:  # a shorter view of the same session reads a prefix
            short = History.of(hist[: k // 2 + 1], "cl100k_base")
            assert short.groups == History.of(hist[: k // 2 + 1], "o200k_base").groups


def test_a_reply_after_a_long_silence_opens_a_turn_of_its_own() -> None:
    """Chats between people resume with either side speaking first: the first message of a
    new sitting does not answer the last message of the one before."""
    day1, day3 = "2024-03-01T10:00:00", "2024-03-03T18:00:00"
    hist = [{"id": "u0", "role": "user", "content": "see you", "timestamp": day1},
            {"id": "a0", "role": "assistant", "content": "bye!", "timestamp": day1},
            {"id": "u1", "role": "user", "content": "one more thing", "timestamp": day1},
            {"id": "a1", "role": "assistant", "name": "sam", "content": "Hey! Back from the trip to Lisbon, it was great",
             "timestamp": day3},
            {"id": "c1", "role": "assistant", "content": "", "tool_calls": call("k", 2), "timestamp": day3},
            {"id": "t1", "role": "tool", "content": "late result", "tool_call_id": "k", "timestamp": "2024-03-05T09:00:00"}]
    h = History.of(hist, "cl100k_base")
    assert h.groups == [(0, 2), (2, 3), (3, 6)], "a1 opens a turn; the late tool result stays with its call"
    w = build_window(hist[:4] + [{"id": "u2", "role": "user", "content": "so how was it?", "timestamp": day3},
                                 {"id": "a2", "role": "assistant", "content": "great", "timestamp": day3}],
                     "tell me about Lisbon", budget_tokens=32)
    assert "a1" in ids(w) and "u1" not in ids(w), ids(w)
    # a model's answer (no speaker name) to a question retried days later still answers it
    late = [dict(m) for m in hist[:4]]
    del late[3]["name"]
    assert History.of(late, "cl100k_base").groups == [(0, 2), (2, 4)]


def test_a_cut_keeps_room_for_its_marker_so_a_window_never_runs_over() -> None:
    """Found by review: a message "shortened" to a few tokens came out longer than that (the cut
    marker alone is ~12 tokens), and the window ran over its budget."""
    from tether.context.tokens import message_tokens

    args = json.dumps({"q": "word " * 100})
    hist = [{"id": "u", "role": "user", "content": "look it up"},
            {"id": "c", "role": "assistant", "content": "checking the catalogue now",
             "tool_calls": [{"id": "k", "type": "function", "function": {"name": "search", "arguments": args}}]},
            {"id": "t", "role": "tool", "content": "nothing found", "tool_call_id": "k"}]
    named = [{"id": "n", "role": "user", "name": "sam", "content": "train report lake " * 10}]
    for h, budgets in ((hist, range(140, 170)), (named, range(1, 40))):
        for budget in budgets:
            w = build_window(h, "thanks", budget_tokens=budget, model="gpt-4o")
            real = sum(message_tokens(m, "o200k_base") for m in w.messages)
            assert w.tokens == real <= budget, (budget, w.tokens, real, ids(w))


def test_numbers_and_codes_are_not_taken_for_typos() -> None:
    hist = [{"id": f"u{k}", "role": "user", "content": f"item {k} arrived"} for k in range(30)]
    hist[10]["content"] = "Package 48223 was returned to the sender."
    from tether.context import relevance

    idx = relevance.index_for([m["id"] for m in hist], [m["content"] for m in hist])
    q = relevance.query_terms("Where is parcel 48213 now?", "o200k_base", 1.0)
    assert relevance.corrected_terms("Where is parcel 48213 now?", q, idx, 30, "o200k_base", 1.0) == q


def test_edits_of_tool_calls_or_times_alone_are_seen_by_the_column_cache() -> None:
    import tether.context.items as items

    h1 = [{"id": "m1", "role": "user", "content": "look"}, {"id": "m2", "role": "assistant", "content": ""},
          {"id": "m3", "role": "user", "content": "x"}]
    build_window(h1, "q", budget_tokens=10_000)
    h2 = [dict(m) for m in h1]
    h2[1]["tool_calls"] = call("k", 200)  # same id, role and (empty) text
    warm = build_window(h2, "q", budget_tokens=10_000).tokens
    items._CACHE.clear()
    assert warm == build_window(h2, "q", budget_tokens=10_000).tokens > 200
    day = [{"role": "user", "content": "hi there", "timestamp": "2024-03-01T10:00:00"},
           {"role": "assistant", "name": "sam", "content": "hello", "timestamp": "2024-03-01T10:01:00"}]
    assert History.of(day, "cl100k_base").groups == [(0, 2)]
    day[1] = {**day[1], "timestamp": "2024-03-01T20:00:00"}  # ten hours later: a new sitting
    assert History.of(day, "cl100k_base").groups == [(0, 1), (1, 2)]


def test_a_window_does_not_open_on_a_system_note_inside_a_turn() -> None:
    h = [{"id": "u0", "role": "user", "content": "hello"}, {"id": "a0", "role": "assistant", "content": "hi there"},
         {"id": "u1", "role": "user", "content": "what is in the file?"},
         {"id": "s1", "role": "system", "content": "The user attached report.pdf"},
         {"id": "a1", "role": "assistant", "content": "It is the Q3 budget."}]
    for budget in range(10, 60):
        got = ids(build_window(h, "and Q4?", budget_tokens=budget))
        assert not got or got[0] in ("u0", "u1") or (got[0] == "a1" and "s1" not in got), (budget, got)


def test_a_late_answer_after_tool_calls_stays_in_its_turn() -> None:
    day1, later = "2024-03-01T10:00:00", "2024-03-02T10:00:00"
    h = [{"id": "u", "role": "user", "content": "look it up", "timestamp": day1},
         {"id": "c", "role": "assistant", "content": "", "tool_calls": call("k", 2), "timestamp": day1},
         {"id": "t", "role": "tool", "content": "found", "tool_call_id": "k", "timestamp": day1},
         {"id": "s", "role": "system", "content": "note", "timestamp": day1},
         {"id": "a", "role": "assistant", "content": "here it is", "timestamp": later}]
    assert History.of(h, "cl100k_base").groups == [(0, 5)]


def test_threads_growing_one_session_see_what_a_fresh_process_would() -> None:
    """Found by review: threads building windows for one growing session corrupted its
    cached columns (IndexError, wrong turns)."""
    import sys
    import threading

    n_msgs = 1200
    hist = [{"id": f"m{k}", "role": "user" if k % 2 == 0 else "assistant", "content": f"message {k}"}
            for k in range(n_msgs)]
    errors: list[Any] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for n in (5, 101, 999):
                try:
                    g = History.of(hist[:n], "cl100k_base").groups
                    if g != [(s, min(s + 2, n)) for s in range(0, n, 2)]:
                        errors.append((n, g[-2:]))
                except Exception as e:  # noqa: BLE001 - any error is the failure being tested
                    errors.append(repr(e))

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=reader) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for n in range(2, n_msgs):
            History.of(hist[:n], "cl100k_base")
            if n % 50 == 0:
                build_window(hist[:n], "message 42", budget_tokens=60)
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(old)
    assert errors == []



def test_a_pinned_tool_call_comes_with_its_results() -> None:
    """Found by audit: the pinned call was taken alone, recency filled the budget, its result
    no longer fitted, and the call was then dropped as incomplete although the pair fitted."""
    lookup = [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]
    h: list[dict[str, Any]] = [
        {"id": "u0", "role": "user", "content": "look it up"},
        {"id": "a1", "role": "assistant", "content": "", "tool_calls": lookup, "pinned": True},
        {"id": "t2", "role": "tool", "tool_call_id": "call_1", "content": "fact " * 300},
        {"id": "a3", "role": "assistant", "content": "done"}]
    h += [{"id": f"m{k}", "role": "user" if k % 2 == 0 else "assistant", "content": "chat " * 40} for k in range(4, 40)]
    w = build_window(h, "and then?", budget_tokens=1000, model="gpt-4o")
    assert {"a1", "t2"} <= set(ids(w)) and "m39" in ids(w), ids(w)
    assert w.tokens <= 1000
    assert_tool_calls_whole([m for m in w.to_messages() if m["role"] not in ("system",)])
    # a pinned result brings its call too
    h[1]["pinned"], h[2]["pinned"] = False, True
    assert {"a1", "t2"} <= set(ids(build_window(h, "and then?", budget_tokens=1000, model="gpt-4o")))



@pytest.mark.parametrize("question_words", [65, 5000])
def test_a_turn_whose_answer_cannot_come_keeps_its_question_alone(question_words: int) -> None:
    """Found by audit: when the newest turn's tool call and result fit but their question did
    not fit with them, the fallback re-added the question with the call (too big) and the
    window came back empty; an oversized question is cut to fit instead."""
    search = [{"id": "call_1", "type": "function", "function": {"name": "search", "arguments": json.dumps({"q": "word " * 43})}}]
    h = [{"id": "u0", "role": "user", "content": "find " * question_words},
         {"id": "a1", "role": "assistant", "content": "", "tool_calls": search},
         {"id": "t2", "role": "tool", "tool_call_id": "call_1", "content": "hit " * 34}]
    w = build_window(h, "and then?", budget_tokens=127, model="gpt-4o")
    assert ids(w) == ["u0"] and w.tokens <= 127
    assert w.truncated_ids == ([] if question_words == 65 else ["u0"])



def test_moving_only_timestamps_is_seen_by_the_relevance_index() -> None:
    """Found by audit: the cached BM25 index checked ids and texts only, so after the times
    alone were edited a date in the query still pointed to the messages of the old dates."""
    from datetime import datetime, timedelta, timezone

    from tether.context import items, relevance

    day0 = datetime(2023, 3, 1, tzinfo=timezone.utc)
    h = []
    for k in range(40):
        h.append({"id": f"u{k}", "role": "user", "content": f"we talked about topic {k} and the plan",
                  "timestamp": day0 + timedelta(days=k)})
        h.append({"id": f"a{k}", "role": "assistant", "content": f"noted, topic {k} it is",
                  "timestamp": day0 + timedelta(days=k)})
    q = "what did we decide on 5 March 2023?"
    assert "u4" in ids(build_window(h, q, budget_tokens=150, model="gpt-4o"))
    for k, m in enumerate(h):  # same ids and texts; 5 March is now topic 23's day
        m["timestamp"] = datetime(2023, 2, 10, tzinfo=timezone.utc) + timedelta(days=k // 2)
    warm = build_window(h, q, budget_tokens=150, model="gpt-4o")
    assert "u23" in ids(warm), ids(warm)
    items._CACHE.clear()
    relevance._INDEXES.clear()
    assert ids(build_window(h, q, budget_tokens=150, model="gpt-4o")) == ids(warm)


@pytest.mark.parametrize("budget", [78, 108, 120])
def test_a_question_kept_alone_takes_the_newest_of_its_turn_that_still_fit(budget: int) -> None:
    """The question kept when its turn does not fit is not all that goes: its newest whole
    tool units that fit with it go too (the first fix kept the question alone)."""
    h = [{"id": "u0", "role": "user", "content": "where is the invoice " + "please " * 20},
         {"id": "c1", "role": "assistant", "content": "", "tool_calls": call("k1", 1)},
         {"id": "t1", "role": "tool", "tool_call_id": "k1", "content": "found " * 2},
         {"id": "c2", "role": "assistant", "content": "", "tool_calls": call("k2", 5)},
         {"id": "t2", "role": "tool", "tool_call_id": "k2", "content": "drawer " * 6}]
    w = build_window(h, "and then?", budget_tokens=budget, model="gpt-4o")
    assert ids(w) == (["u0", "c1", "t1"] if budget < 87 else ["u0", "c2", "t2"]) and w.tokens <= budget
    assert_tool_calls_whole([m for m in w.to_messages() if m["role"] != "system"])
