"""Behaviour of tether.context: budgets, pairs, oversized messages, caches, import cost."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tether.context import Window, build_window, count_tokens, encoding_for, model_limits
from tether.context.tokens import message_tokens
from tether.errors import ContextOverflow
from tether.sessions import Message


def conv(n_pairs: int, words: int = 20, prefix: str = "m") -> list[dict]:
    out = []
    for i in range(n_pairs):
        out.append({"id": f"{prefix}{2*i}", "role": "user", "content": f"question {i} " + "alpha " * words})
        out.append({"id": f"{prefix}{2*i+1}", "role": "assistant", "content": f"answer {i} " + "beta " * words})
    return out


def ids(w: Window) -> list[str]:
    return [m["id"] if isinstance(m, dict) else m.id for m in w.messages]


def test_import_does_not_pull_litellm() -> None:
    code = "import sys, tether.context; assert 'litellm' not in sys.modules, 'litellm imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("model,enc", [
    ("gpt-4o-mini", "o200k_base"), ("openai/gpt-4.1", "o200k_base"), ("gpt-4", "cl100k_base"),
    ("gpt-3.5-turbo", "cl100k_base"), ("anthropic/claude-sonnet-4-5", "cl100k_base"),
    ("ollama/llama3", "cl100k_base"), (None, "cl100k_base"), ("o3-mini", "o200k_base"),
    ("groq/openai/gpt-oss-120b", "o200k_base"), ("openrouter/openai/gpt-4o", "o200k_base"),
])
def test_encoding_per_family(model: str | None, enc: str) -> None:
    assert encoding_for(model) == enc


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4", "anthropic/claude-sonnet-4-5", None])
@pytest.mark.parametrize("budget", [50, 300, 1000])
def test_explicit_budget_honoured_by_model_tokenizer(model: str | None, budget: int) -> None:
    hist = conv(60)
    w = build_window(hist, "question 3 alpha", budget_tokens=budget, model=model)
    enc = encoding_for(model)
    assert w.budget == budget
    assert w.tokens == sum(message_tokens(m, enc) for m in w.messages) <= budget
    assert w.dropped == len(hist) - len(w.messages) == len(w.dropped_ids)
    assert w.messages, "a window with budget left must not be empty"


def test_chronological_and_same_objects() -> None:
    hist = conv(30)
    w = build_window(hist, "question 2", budget_tokens=400)
    pos = [hist.index(m) for m in w.messages]
    assert pos == sorted(pos)
    assert all(any(m is h for h in hist) for m in w.messages)


def test_pairs_kept_and_no_orphan_assistant_start() -> None:
    hist = conv(40)
    for budget in (60, 130, 200, 333, 500, 777):
        w = build_window(hist, "question 5 alpha", budget_tokens=budget)
        roles = [m["role"] for m in w.messages]
        assert roles and roles[0] == "user", budget
        got = set(ids(w))
        for m in w.messages:  # every chosen question has its answer and vice versa
            k = int(m["id"][1:])
            partner = f"m{k+1}" if k % 2 == 0 else f"m{k-1}"
            assert partner in got, (budget, m["id"])


def test_model_derived_budget_subtracts_parts() -> None:
    w = build_window(conv(5), "hi", model="gpt-4o-mini", system="be brief", context={"user": "ann"})
    p = w.parts
    assert p["window"] == model_limits("gpt-4o-mini").max_input_tokens == 128000
    assert p["reply_reserve"] > 0 and p["margin"] > 0 and p["system"] > 0 and p["context"] > 0
    assert w.budget == p["window"] - p["reply_reserve"] - p["system"] - p["context"] - p["query"] - p["margin"] - p["markers"]
    assert w.dropped == 0


def test_context_window_and_reply_overrides() -> None:
    w = build_window(conv(50), "q", model="gpt-4o-mini", context_window=2000, max_output_tokens=500)
    assert w.parts["window"] == 2000 and w.parts["reply_reserve"] == 500
    assert w.tokens <= w.budget < 1500
    assert w.dropped > 0


def test_unknown_model_gets_default_window() -> None:
    lim = model_limits("no-such-provider/no-such-model")
    assert not lim.known and lim.max_input_tokens > 0


def test_oversized_message_is_shortened_not_dropped() -> None:
    big = "word " * 5000 + "THE END"
    hist = conv(3) + [{"id": "big", "role": "user", "content": big}]
    w = build_window(hist, "what about it?", budget_tokens=500)
    assert "big" in ids(w) and w.truncated_ids == ["big"]
    short = next(m for m in w.messages if m["id"] == "big")
    assert short["content"].startswith("word") and short["content"].endswith("THE END")
    assert "omitted" in short["content"]
    assert hist[-1]["content"] == big, "the caller's message must not be modified"
    assert w.tokens <= 500


def test_oversized_message_object_copy_keeps_id() -> None:
    m = Message(role="assistant", content="x " * 3000)
    w = build_window([Message(role="user", content="paste"), m], "and?", budget_tokens=300)
    assert m.id in [x.id for x in w.messages]
    assert w.tokens <= 300 and m.content == "x " * 3000


def test_query_larger_than_window_is_clear_error() -> None:
    with pytest.raises(ContextOverflow) as e:
        build_window(conv(2), "word " * 10000, model="gpt-4")
    assert "8192" in str(e.value) and "gpt-4" in str(e.value) and "assumption" not in str(e.value)
    with pytest.raises(ContextOverflow):
        build_window([], "word " * 3000, context_window=1000)
    with pytest.raises(ContextOverflow) as e:  # an unknown model's window is a guess: say so, and how to fix it
        build_window([], "word " * 10000, model="my-local/llm")
    assert "assumption" in str(e.value) and "context_window" in str(e.value)


def test_a_fine_tune_has_its_base_models_window() -> None:
    assert model_limits("ft:gpt-4o-mini-2024-07-18:acme::abc123").max_input_tokens == 128000
    assert model_limits("openai/ft:gpt-4o-mini-2024-07-18:acme::abc123").known


def test_to_messages_order_and_markers() -> None:
    hist = conv(20)
    w = build_window(hist, "question 1", budget_tokens=150, system="sys", context={"k": "v"})
    msgs = w.to_messages()
    assert msgs[0]["role"] == "system" and "sys" in msgs[0]["content"] and "k: v" in msgs[0]["content"]
    assert "left out" in msgs[0]["content"]
    assert msgs[-1] == {"role": "user", "content": "question 1"}
    assert [m["content"] for m in msgs[1:-1]] == [m["content"] for m in w.messages]


def test_to_messages_sends_the_same_fields_for_session_messages_and_dicts() -> None:
    """Session Messages take a fast path; it must send what the dict path sends: a valid
    name, tool fields kept as extras, nothing else (ids, timestamps and usage stay home)."""
    call = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    rows = [
        {"role": "user", "content": "hi", "name": "Ann"},
        {"role": "assistant", "content": "", "tool_calls": call},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "assistant", "content": "it is 42", "name": "not valid!"},
    ]
    as_msgs = [Message(**r) for r in rows]
    as_dicts = [{"id": m.id, **r} for m, r in zip(as_msgs, rows)]
    sent = build_window(as_msgs, "and?", budget_tokens=1000).to_messages()
    assert sent == build_window(as_dicts, "and?", budget_tokens=1000).to_messages()
    assert sent[0] == {"role": "user", "content": "hi", "name": "Ann"}
    assert sent[1] == {"role": "assistant", "content": "", "tool_calls": call}
    assert sent[2] == {"role": "tool", "content": "42", "tool_call_id": "c1"}
    assert sent[3] == {"role": "assistant", "content": "it is 42"}


def test_message_text_set_to_none_after_creation_counts_as_empty() -> None:
    """Message does not validate assignments; the typed fast path must not trust them."""
    msgs = [Message(role="user" if i % 2 == 0 else "assistant", content=f"message {i} about apples " * 3)
            for i in range(20)]
    build_window(msgs, "q", budget_tokens=10_000)  # columns cached with the original texts
    msgs[1].content = None  # type: ignore[assignment]
    w = build_window(msgs, "q", budget_tokens=10_000)
    sent = w.to_messages()
    assert len(sent) == 21 and sent[1]["content"] == "" and sent[-1]["content"] == "q"
    assert w.tokens == sum(message_tokens({"role": m.role, "content": m.content or ""}, "cl100k_base") for m in msgs)
    ranked = build_window(msgs, "apples 3", budget_tokens=80)  # ranks the texts, the empty one included
    assert 0 < ranked.tokens <= 80 and ranked.dropped > 0


def test_count_tokens_message_list_has_overhead() -> None:
    msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    assert count_tokens(msgs, "gpt-4o") == count_tokens("hello", "gpt-4o") + count_tokens("hi", "gpt-4o") + 2 * 4 + 3


def test_message_token_cache_invalidated_on_edit() -> None:
    m = Message(role="user", content="short text")
    n1 = message_tokens(m, "cl100k_base")
    assert any(k.startswith("cl100k_base:") for k in m.tokens)
    m.content = "a much longer text than before, with many more tokens in it"
    n2 = message_tokens(m, "cl100k_base")
    assert n2 > n1
    assert list(m.tokens) == [f"cl100k_base:{m.content_hash()}"]


def test_pinned_message_always_kept() -> None:
    hist = conv(50)
    hist[4]["pinned"] = True
    w = build_window(hist, "unrelated zzz", budget_tokens=200)
    assert "m4" in ids(w)


def test_empty_history_and_zero_budget() -> None:
    assert build_window([], "hi", budget_tokens=100).messages == []
    w = build_window(conv(3), "hi", budget_tokens=0)
    assert w.messages == [] and w.dropped == 6


def test_unknown_policy_option_rejected() -> None:
    with pytest.raises(TypeError):
        build_window(conv(2), "q", budget_tokens=100, no_such_knob=1)


def test_explicit_budget_with_short_query_does_not_import_litellm() -> None:
    code = (
        "import sys; from tether.context import build_window; "
        "w = build_window([{'id': 'a', 'role': 'user', 'content': 'hi'}], 'q', budget_tokens=50, model='gpt-4o'); "
        "assert w.messages and 'litellm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_omitted_marker_is_only_sent_when_a_question_was_left_out() -> None:
    """A chat that opens with the assistant's greeting is whole: no "omitted" line. A pinned
    answer kept without its question does get one."""
    greet = [{"id": "g", "role": "assistant", "content": "Hi! How can I help?"},
             {"id": "u1", "role": "user", "content": "What is BM25?"},
             {"id": "a1", "role": "assistant", "content": "A ranking function."}]
    w = build_window(greet, "thanks", budget_tokens=1000)
    assert w.dropped == 0 and not w.opens_mid_turn
    assert all("omitted" not in m["content"] for m in w.to_messages())
    pinned = [{"id": "u0", "role": "user", "content": "word " * 300},
              {"id": "a0", "role": "assistant", "content": "the answer to keep", "pinned": True},
              {"id": "u1", "role": "user", "content": "next"}, {"id": "a1", "role": "assistant", "content": "ok"}]
    w = build_window(pinned, "and?", budget_tokens=25)
    assert [m["id"] for m in w.messages][0] == "a0" and w.opens_mid_turn
    assert w.to_messages()[1] == {"role": "user", "content": "[earlier conversation omitted]"}


def test_tool_calls_count_towards_the_budget() -> None:
    """An assistant message's tool calls are sent with it, so they are counted: a call with
    a long argument cannot hide inside a small window."""
    import json

    args = json.dumps({"query": "word " * 2000})
    calls = [{"id": "call_1", "type": "function", "function": {"name": "search", "arguments": args}}]
    hist = [{"id": "u1", "role": "user", "content": "look it up"},
            {"id": "a1", "role": "assistant", "content": "", "tool_calls": calls},
            {"id": "t1", "role": "tool", "content": "found it", "tool_call_id": "call_1"},
            {"id": "a2", "role": "assistant", "content": "Here it is."}]
    full = build_window(hist, "thanks", budget_tokens=100_000)
    assert full.tokens >= count_tokens(args, "gpt-4o") + count_tokens("found it", "gpt-4o")
    assert [m["id"] for m in full.messages] == ["u1", "a1", "t1", "a2"]
    small = build_window(hist, "thanks", budget_tokens=500)
    sent = json.dumps([m for m in small.to_messages() if m["role"] != "system"])
    assert small.tokens <= 500 and count_tokens(sent, "gpt-4o") < 600
    assert "a1" not in [m["id"] for m in small.messages]
    msg = Message(role="assistant", content="", tool_calls=calls)  # a session's own message: the same count
    assert build_window([hist[0], msg], "x", budget_tokens=100_000).tokens == full.tokens - (
        build_window(hist[2:], "x", budget_tokens=100_000).tokens)



def test_a_question_that_leaves_no_room_for_the_reply_overflows() -> None:
    """Found by audit: the check left the reply reserve out, so a question that fitted the
    window only without its reply was accepted. The router relies on this error to move to
    a model with a larger window."""
    hist = [{"id": "u0", "role": "user", "content": "hi"}, {"id": "a0", "role": "assistant", "content": "hello"}]
    with pytest.raises(ContextOverflow) as e:
        build_window(hist, "word " * 15900, model="gpt-3.5-turbo", max_output_tokens=1500)
    assert "1500" in str(e.value) and "16385" in str(e.value) and "reply" in str(e.value)
    w = build_window(hist, "word " * 14000, model="gpt-3.5-turbo", max_output_tokens=1500)
    assert count_tokens(w.to_messages(), "gpt-3.5-turbo") + 1500 <= 16385



def test_no_omission_note_without_a_history_budget_to_pay_for_it() -> None:
    """The note costs tokens: sent only when a history budget was left to carry it (a window
    sized to the question alone, or budget_tokens=0 asked for, sends system and question only)."""
    hist = [{"id": "u0", "role": "user", "content": "hi"}, {"id": "a0", "role": "assistant", "content": "hello"}]
    msgs = build_window(hist, "and?", budget_tokens=0, system="Be brief.").to_messages()
    assert [m["role"] for m in msgs] == ["system", "user"] and "left out" not in msgs[0]["content"]
    zero = 0
    for n in range(14540, 14575):  # questions that leave 0 to ~30 tokens of history budget
        try:
            w = build_window(hist, "word " * n, model="gpt-3.5-turbo", max_output_tokens=1500)
        except ContextOverflow:
            continue
        sent = w.to_messages()
        assert count_tokens(sent, "gpt-3.5-turbo") + 1500 + w.parts["margin"] <= 16385, n
        zero += w.budget == 0
    assert zero, "some of these questions leave no history budget"



@pytest.mark.parametrize("model", ["gpt-4o", "gpt-3.5-turbo"])
@pytest.mark.parametrize("text", ["😀" * 3000, "👧😀🌈" * 500, "\u200d👧" * 900, "é̈" * 2000, "abc \ud800 déf " * 600])
def test_a_cut_never_splits_a_character(model: str, text: str) -> None:
    """Found by audit: head and tail were cut at token boundaries inside a character's bytes and
    decoded to U+FFFD. The kept head and tail are the original's own first and last characters."""
    enc = encoding_for(model)
    for budget in (40, 60, 100):
        w = build_window([{"id": "u0", "role": "user", "content": text}], "and?", budget_tokens=budget, model=model)
        cut = w.messages[0]["content"]
        head, _, rest = cut.partition("\n[... ")
        tail = rest.split(" omitted ...]\n", 1)[1]
        assert "\ufffd" not in cut and text.startswith(head) and text.endswith(tail), (budget, cut)
        assert (head and tail) or budget == 40, "only a tiny cut may keep no whole character (an emoji is 2-3 tokens)"
        assert w.tokens == message_tokens(w.messages[0], enc) <= budget



def test_a_history_without_ids_is_not_taken_to_open_mid_turn() -> None:
    """Found by audit: the first message was recognised by its id, so a greeting without one
    was taken for a reply whose question was left out and got the orphan marker."""
    greet = {"role": "assistant", "content": "Welcome! " + "Here is our long policy text. " * 400}
    hist = [greet, {"role": "user", "content": "ok"}, {"role": "assistant", "content": "fine"}]
    w = build_window(hist, "and then?", budget_tokens=300, model="gpt-4o")
    assert w.messages[0]["content"].startswith("Welcome!") and not w.opens_mid_turn
    assert "[earlier conversation omitted]" not in [m["content"] for m in w.to_messages()]
    assert w.truncated_ids == [], "no made-up id for the shortened greeting"
    mixed = [{"id": "#x", "role": "user", "content": "an id like a stand-in"}] + conv(10) + [
        {"role": "user", "content": "no id " * 50}, {"role": "assistant", "content": "none"}]
    w = build_window(mixed, "question 9", budget_tokens=120)
    assert w.dropped == len(mixed) - len(w.messages)
    assert w.dropped_ids == [m["id"] for m in mixed if "id" in m and m not in w.messages]
