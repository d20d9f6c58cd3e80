"""The selection policy on small constructed histories: recency share, relevance fill, cues, caches."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.context import build_window, window_for_session
from tether.context import items as items_mod
from tether.context import relevance
from tether.context.tokens import message_tokens
from tether.sessions import Message, Session

FILLER = [
    "the weather was mild and we walked along the river for a while",
    "lunch was a sandwich and some soup, nothing special to report",
    "work has been busy with meetings and a few long reviews this week",
    "the train was late again so I read a few pages of my book",
]


def chat(n_pairs: int, special: dict[int, str] | None = None, start: datetime | None = None) -> list[dict]:
    """n_pairs of filler turns; special maps a pair number to the user text of that pair."""
    special = special or {}
    t0 = start or datetime(2024, 1, 1, 9, 0)
    out = []
    for i in range(n_pairs):
        when = (t0 + timedelta(days=i)).isoformat()
        out.append({"id": f"u{i}", "role": "user", "content": special.get(i, FILLER[i % 4] + f" ({i})"), "timestamp": when})
        out.append({"id": f"a{i}", "role": "assistant", "content": "I see. " + FILLER[(i + 1) % 4], "timestamp": when})
    return out


def ids(w) -> list[str]:  # type: ignore[no-untyped-def]
    return [m["id"] if isinstance(m, dict) else m.id for m in w.messages]


def test_recency_share_takes_newest_whole_turns_when_nothing_matches() -> None:
    hist = chat(80)
    w = build_window(hist, "zzzz qqqq", budget_tokens=600)
    got = ids(w)
    n = len(got)
    assert n >= 4 and n % 2 == 0
    assert got == [m["id"] for m in hist[-n:]], "an unmatched query gets the most recent turns"


def test_relevance_fill_finds_an_old_turn_and_keeps_its_pair() -> None:
    hist = chat(120, {7: "my locker combination is 4812, remember the zebra sticker"})
    w = build_window(hist, "What was my locker combination?", budget_tokens=500)
    got = ids(w)
    assert "u7" in got and "a7" in got
    assert "u119" in got and "a119" in got, "the newest turn is always kept"
    assert got.index("u7") < got.index("u119"), "chronological order"


def test_relevance_does_not_crowd_out_recency() -> None:
    special = {i: f"we talked about the zebra exhibit again ({i})" for i in range(0, 60, 3)}
    hist = chat(100, special)
    w = build_window(hist, "what about the zebra exhibit?", budget_tokens=800)
    got = set(ids(w))
    assert {"u99", "a99"} <= got, "the newest turn is always kept"
    assert sum(1 for i in special if f"u{i}" in got) >= 8, "old turns that match fill the budget"
    # a question about recent turns (or a gate switched off) keeps the full recency share
    w = build_window(hist, "what about the zebra exhibit?", budget_tokens=800, recency_gate=0)
    got = set(ids(w))
    assert {f"{r}{i}" for r in "ua" for i in range(92, 100)} <= got
    assert sum(1 for i in special if f"u{i}" in got) >= 5


def test_a_recent_match_is_kept_when_the_query_points_back() -> None:
    """A query matching many old turns shrinks the recency block; a recent turn that matches
    as well still gets in (it ranks higher), without a whole block of unmatched recent turns."""
    special = {i: f"we talked about the zebra exhibit again ({i})" for i in range(0, 60, 2)}
    special[95] = "the zebra exhibit moved to the new hall"
    hist = chat(100, special)
    q = "what about the zebra exhibit?"

    def old_matches(got: list[str]) -> int:
        return sum(1 for i in special if i < 60 and f"u{i}" in got)

    got = ids(build_window(hist, q, budget_tokens=800))
    assert {"u95", "a95", "u99"} <= set(got)
    assert "u95" not in ids(build_window(hist, q, budget_tokens=800, recent_boost=0))  # the block alone misses it
    block = ids(build_window(hist, q, budget_tokens=800, recency_gate=0))  # a full block keeps it...
    assert "u95" in block and old_matches(got) > old_matches(block) + 4  # ...at the cost of old matches


def test_date_cue_prefers_messages_from_that_time() -> None:
    special = {i: f"went to the concert in the park ({i})" for i in (10, 50)}
    hist = chat(90, special, start=datetime(2023, 1, 1))
    day50 = datetime(2023, 1, 1) + timedelta(days=50)
    q = f"What did I do on {day50.day} {day50.strftime('%B')}, {day50.year}? the concert?"
    w = build_window(hist, q, budget_tokens=120, recency_share=0.0)
    assert "u50" in ids(w) and "u10" not in ids(w)


def test_index_is_extended_not_rebuilt_as_messages_arrive() -> None:
    hist = chat(30, {3: "the password hint is marmalade"})
    build_window(hist, "password hint?", budget_tokens=300)
    idx = relevance.index_for([m["id"] for m in hist], [m["content"] for m in hist])
    size = len(idx)
    hist += [{"id": "u30", "role": "user", "content": "new marmalade topic"},
             {"id": "a30", "role": "assistant", "content": "ok"}]
    build_window(hist, "password hint?", budget_tokens=300)
    idx2 = relevance.index_for([m["id"] for m in hist], [m["content"] for m in hist])
    assert idx2 is idx and len(idx2) == size + 2


def test_edit_invalidates_index_and_token_cache() -> None:
    hist = chat(60, {5: "the secret word is pineapple"})
    w1 = build_window(hist, "what is the secret word pineapple?", budget_tokens=200, recency_share=0.0)
    assert "u5" in ids(w1)
    assert "u20" not in ids(w1)
    hist[40] = {**hist[40], "content": "the secret word is pineapple, pineapple, pineapple and more text " * 3}
    w2 = build_window(hist, "what is the secret word pineapple?", budget_tokens=200, recency_share=0.0)
    assert "u20" in ids(w2)  # the edited text is indexed...
    assert w2.tokens == sum(message_tokens(m, w2.encoding) for m in w2.messages) <= 200  # ...and recounted
    hist[10] = {**hist[10], "content": "nothing to see here"}
    w3 = build_window(hist, "what is the secret word pineapple?", budget_tokens=200, recency_share=0.0)
    assert "u5" not in ids(w3) and "u20" in ids(w3)


def test_prefix_history_gives_same_result_as_fresh_caches() -> None:
    hist = chat(70, {4: "the garage code is 1234", 40: "the garage door is broken"})
    build_window(hist, "garage code?", budget_tokens=250)  # caches the longer history
    short = hist[:60]
    warm = ids(build_window(short, "garage code?", budget_tokens=250))
    relevance._INDEXES.clear()
    items_mod._CACHE.clear()
    cold = ids(build_window(short, "garage code?", budget_tokens=250))
    assert warm == cold


def test_many_sessions_keep_their_relevance_index_and_columns() -> None:
    """A server turning over 40 long sessions finds each one's index again on its next turn,
    instead of re-stemming the whole history."""
    relevance._INDEXES.clear()
    items_mod._CACHE.clear()
    sessions = [[{**m, "id": f"s{k}-{m['id']}"} for m in chat(60, {5: f"session {k} keeps the code {1000 + k}"})]
                for k in range(40)]
    for hist in sessions:
        build_window(hist, "what was the code?", budget_tokens=200)
    first = {k: relevance.index_for([m["id"] for m in h], [m["content"] for m in h]) for k, h in enumerate(sessions)}
    for k, hist in enumerate(sessions):
        w = build_window(hist, "what was the code?", budget_tokens=200)
        assert f"s{k}-u5" in ids(w)
        assert relevance.index_for([m["id"] for m in hist], [m["content"] for m in hist]) is first[k]
    assert len(items_mod._CACHE) >= 40


def test_pin_change_without_edit_is_seen() -> None:
    hist = [Message(role="user" if i % 2 == 0 else "assistant", content=FILLER[i % 4] + str(i)) for i in range(60)]
    w1 = build_window(hist, "zzz", budget_tokens=150)
    assert hist[2].id not in ids(w1)
    hist[2].pinned = True
    w2 = build_window(hist, "zzz", budget_tokens=150)
    assert hist[2].id in ids(w2)


def test_speaker_named_in_query_is_preferred() -> None:
    hist = []
    for i in range(40):
        hist.append({"id": f"x{i}", "role": "user", "name": "Ann", "content": f"Ann: filler {FILLER[i % 4]}"})
        hist.append({"id": f"y{i}", "role": "assistant", "name": "Bob", "content": f"Bob: filler {FILLER[(i+2) % 4]}"})
    hist[10]["content"] = "Ann: I adopted a cat named Pixel"
    hist[31]["content"] = "Bob: I adopted a cat named Rex"
    w = build_window(hist, "Which cat did Bob adopt?", budget_tokens=90, recency_share=0.0)
    assert "y15" in ids(w) and "x5" not in ids(w)


def test_window_for_session_uses_system_context_and_skips_unanswered() -> None:
    s = Session(system="be terse", context={"project": "tether"}, pinned_model="gpt-4o-mini")
    s.messages = [Message(role="user", content="hello"), Message(role="assistant", content="hi"),
                  Message(role="user", content="lost question", status="unanswered")]
    w = window_for_session(s, "next question")
    assert [m.content for m in w.messages] == ["hello", "hi"]
    assert w.encoding == "o200k_base" and w.parts["system"] > 0 and w.parts["context"] > 0
    msgs = w.to_messages()
    assert msgs[0]["role"] == "system" and "project: tether" in msgs[0]["content"]
    assert msgs[-1]["content"] == "next question"
    assert w.summary()["kept"] == 2


words = st.sampled_from("alpha beta gamma delta river mountain code budget token zebra ok yes".split())
texts = st.lists(words, min_size=0, max_size=80).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(
    contents=st.lists(st.tuples(st.sampled_from(["user", "assistant", "tool"]), texts, st.booleans()), max_size=40),
    budget=st.integers(min_value=0, max_value=700),
    query=texts,
    model=st.sampled_from([None, "gpt-4o-mini", "gpt-4"]),
)
def test_property_never_over_budget_and_chronological(contents, budget, query, model) -> None:  # type: ignore[no-untyped-def]
    hist = [{"id": f"p{i}", "role": r, "content": c, "pinned": pin and i % 7 == 0} for i, (r, c, pin) in enumerate(contents)]
    w = build_window(hist, query or "q", budget_tokens=budget, model=model)
    assert w.tokens == sum(message_tokens(m, w.encoding) for m in w.messages) <= budget
    pos = [int(m["id"][1:]) for m in w.messages]
    assert pos == sorted(pos) and len(set(pos)) == len(pos)
    assert w.dropped + len(w.messages) == len(hist)


def test_summary_text_is_counted_and_rendered() -> None:
    hist = chat(60)
    plain = build_window(hist, "zzz", budget_tokens=600)
    w = build_window(hist, "zzz", budget_tokens=600, summary_text="We planned a trip to Oslo.")
    assert w.parts["summary"] > 0 and w.budget == 600 - w.parts["summary"]
    assert w.tokens <= w.budget < plain.budget
    assert "trip to Oslo" in w.to_messages()[0]["content"]


async def test_rolling_summary_cached_in_session_and_invalidated() -> None:
    from tether.context.summary import cached_summary, update_summary

    s = Session()
    s.messages = [Message(role="user" if i % 2 == 0 else "assistant", content=FILLER[i % 4] + str(i)) for i in range(100)]
    calls: list[list[dict]] = []

    async def complete(msgs: list[dict]) -> str:
        calls.append(msgs)
        return f"summary #{len(calls)}"

    w = window_for_session(s, "zzz", budget_tokens=300)
    assert await update_summary(s, w, complete) == "summary #1"
    assert await update_summary(s, w, complete) == "summary #1" and len(calls) == 1  # cached
    assert cached_summary(s) == "summary #1"
    s.messages[s.events[-1].data["count"] - 1] = Message(role="user", content="edited")
    assert cached_summary(s) is None


def test_fuse_scales_both_signals() -> None:
    import numpy as np

    from tether.context.embeddings import fuse

    bm25 = np.array([0.0, 2.0, 4.0, 0.0])
    sims = np.array([0.9, 0.1, 0.1, 0.1])
    out = fuse(bm25, sims, 1.0)
    assert out[2] == 1.0 and out[1] == 0.5 and out[0] == 1.0 and out[3] == 0.0


def test_embeddings_option_without_extra_falls_back_to_bm25() -> None:
    from tether.context import embeddings

    hist = chat(40, {3: "my locker combination is 4812"})
    w = build_window(hist, "locker combination?", budget_tokens=200, embeddings=True)
    assert "u3" in ids(w)
    if not embeddings.available():
        assert ids(w) == ids(build_window(hist, "locker combination?", budget_tokens=200))


def test_passage_scores_join_terms_split_between_neighbours() -> None:
    import numpy as np

    texts = ["we rented a kayak", "the lake was calm", "lunch was soup", "a kayak shop", "nothing here", "the lake froze"]
    idx = relevance.Index()
    for k, t in enumerate(texts):
        idx.append(f"m{k}", t)
    q = relevance.terms("kayak on the lake")
    # a kernel of one message is plain BM25
    assert np.allclose(idx.passage_scores(q, 6, 0.9, 0.4, np.array([1.0])), idx.scores(q, 6, 0.9, 0.4))
    p = idx.passage_scores(q, 6, 0.9, 0.4, np.array([0.5, 1.0, 0.5]))
    assert p[0] > p[3] and p[1] > p[4], "kayak next to lake beats kayak or lake alone"
    assert p[2] > 0, "a message between the two gets both terms from its passage"
    # statistics cover only the first n messages, as for plain scores
    p3 = idx.passage_scores(q, 3, 0.9, 0.4, np.array([0.5, 1.0, 0.5]))
    assert p3.shape == (3,) and p3[2] > 0 and not np.allclose(p3, p[:3])


def test_passage_weight_favours_turns_whose_neighbours_share_the_query() -> None:
    from tether.context.items import History
    from tether.context.ranking import rank_units
    from tether.context.select import Policy

    hist = chat(60, {10: "we rented a kayak for the weekend", 11: "the lake was calm and warm",
                     40: "my cousin sells kayak paddles"})
    h = History.of(hist, "cl100k_base")
    ratio = {}
    for pw in (0.8, 0.0):
        _, scores = rank_units(h, "kayak on the lake", Policy(passage_weight=pw))
        ratio[pw] = scores[h.ids.index("u10")] / scores[h.ids.index("u40")]
    # the kayak turn followed by a lake turn beats a lone kayak mention by more with passages
    assert ratio[0.8] > ratio[0.0] * 1.05


def test_budget_smaller_than_any_message_gives_an_empty_window() -> None:
    """Found by the property test: a 1-token budget once "kept" a 4-token message."""
    hist = [{"id": "a", "role": "user", "content": ""}, {"id": "b", "role": "assistant", "content": "word " * 40}]
    for budget in (1, 3):
        w = build_window(hist, "q", budget_tokens=budget)
        assert w.messages == [] and w.tokens == 0 and w.dropped == 2
    w = build_window(hist, "q", budget_tokens=15)  # room for the empty message, not for a useful cut of b
    assert [m["id"] for m in w.messages] == ["a"] and w.tokens <= 15
    w = build_window(hist, "q", budget_tokens=40)
    assert w.messages and w.tokens <= 40


def _two_sittings() -> list[dict]:
    """60 turns two minutes apart (every other early one about the zebra exhibit), then 2 turns two days later."""
    out = []
    t0 = datetime(2024, 1, 1, 9, 0)
    for i in range(62):
        when = t0 + timedelta(minutes=2 * i) + (timedelta(days=2) if i >= 60 else timedelta(0))
        u = f"we talked about the zebra exhibit again ({i})" if i < 30 and i % 2 == 0 else FILLER[i % 4] + f" ({i})"
        out.append({"id": f"u{i}", "role": "user", "content": u, "timestamp": when.isoformat()})
        out.append({"id": f"a{i}", "role": "assistant", "content": "I see. " + FILLER[(i + 1) % 4], "timestamp": when.isoformat()})
    return out


def test_query_about_older_turns_gets_only_the_current_sitting_as_recency() -> None:
    q = "what about the zebra exhibit?"
    block = {"recency_min": 0.25}  # a shrunk recency block big enough to reach across the silence
    got = ids(build_window(_two_sittings(), q, budget_tokens=800, **block))
    assert {"u60", "a60", "u61", "a61"} <= set(got), "the current sitting is kept"
    assert "u59" not in got and "u58" not in got, "turns before the long silence are not taken for recency"
    off = ids(build_window(_two_sittings(), q, budget_tokens=800, session_gap=0, **block))
    assert "u59" in off, "without sittings the recency share crosses the silence"

    def early(w: list[str]) -> int:  # turns from the part of the chat the query is about
        return sum(1 for i in w if i.startswith("u") and int(i[1:]) < 30)

    assert early(got) > early(off), "the budget not spent before the silence goes to relevant turns"


def test_follow_up_after_a_silence_still_gets_the_previous_sitting() -> None:
    got = ids(build_window(_two_sittings(), "and then what?", budget_tokens=600))
    assert "u59" in got and "a59" in got, "an unmatched follow-up keeps the newest turns across a silence"


def test_sitting_start_reads_naive_aware_and_missing_timestamps() -> None:
    from tether.context.items import History
    from tether.context.select import _sitting_start

    def hist(stamps):  # type: ignore[no-untyped-def]
        return History.of([{"id": f"s{k}-{s}", "role": "user", "content": f"m{k} {s}", "timestamp": s}
                           for k, s in enumerate(stamps)], "cl100k_base")

    assert _sitting_start(hist(["2024-01-01T09:00", "2024-01-01T10:00", "2024-01-02T09:00", "2024-01-02T09:05"]), 4) == 2
    # undated messages join the later sitting (the silence is measured between dated ones)
    assert _sitting_start(hist(["2024-01-01T09:00:00Z", None, "2024-01-01T20:00:00+00:00", "bad"]), 4) == 1
    assert _sitting_start(hist([None, None, None]), 4) == 0
    # a silence further back than recency could reach does not matter (and is not searched for)
    four = hist(["2024-01-01T09:00", "2024-01-02T09:00", "2024-01-02T09:01", "2024-01-02T09:02"])
    assert _sitting_start(four, 4, reach=sum(four.tokens)) == 1
    assert _sitting_start(four, 4, reach=four.tokens[-1]) == 0
    assert _sitting_start(hist(["2024-01-01T09:00", "2024-01-01T11:00"]), 4) == 0


def test_budget_too_small_for_a_message_overhead_leaves_it_out() -> None:
    # found by the property test: an empty message still costs its format overhead
    w = build_window([{"id": "m0", "role": "user", "content": ""}], "", budget_tokens=1)
    assert w.messages == [] and w.tokens == 0
    w = build_window([{"id": "m0", "role": "user", "content": "word " * 40}], "", budget_tokens=24)
    assert ids(w) == ["m0"] and w.tokens <= 24, "a budget of min_truncated or more still gets a cut message"


def test_terms_are_the_same_from_the_word_cache_as_when_first_worked_out() -> None:
    text = "She went to the Market and bought apples; the kids ate apples. Went HOME."
    relevance._term_of.clear()
    first = relevance.terms(text)
    # order and repeats kept, stop words out, irregular forms joined to their base, stemmed
    assert first == ["go", "market", "buy", "appl", "kid", "eat", "appl", "go", "home"]
    assert relevance.terms(text) == first  # now every word comes from the cache
    relevance._term_of.clear()
    assert relevance.terms("the kids went home") == ["kid", "go", "home"]
    assert relevance.terms(text) == first  # part cached, part new
    idx = relevance.Index()
    idx.append("m0", "We ate 3 apples yesterday")
    idx.append("m1", "apples are red")
    assert (idx.has_time, idx.has_number) == ([True, False], [True, False])
    assert relevance.answer_cues("We ate 3 apples yesterday") == (True, True)
    assert idx.df("appl", 2) == 2 and idx.doclen == [4, 2]  # eat, 3, appl, yesterday; appl, red


def test_a_rare_query_word_outweighs_a_common_one_that_matches_as_often() -> None:
    """Both words occur in one message each (the same idf in this chat): English at large,
    read from the tokenizer's vocabulary, says which one names the subject."""
    from tether.context.items import History
    from tether.context.ranking import rank_units
    from tether.context.relevance import word_rarity
    from tether.context.select import Policy

    for enc in ("cl100k_base", "o200k_base"):
        assert word_rarity("time", enc) < word_rarity("kayak", enc) < 1.0
        assert word_rarity("zqxvbn", enc) == 1.0  # not one token: as rare as it gets
    # the same sentence around each word, and the same neighbours (filler repeats every 4 turns)
    hist = chat(60, {10: "we talked about time there", 42: "we talked about kayak there"})
    h = History.of(hist, "cl100k_base")
    common, rare = h.ids.index("u10"), h.ids.index("u42")
    _, plain = rank_units(h, "time kayak", Policy(term_rarity=0), "cl100k_base")
    assert plain[common] == pytest.approx(plain[rare], rel=0.02)
    _, weighted = rank_units(h, "time kayak", Policy(), "cl100k_base")
    assert weighted[rare] > weighted[common] * 1.1
    # with room for the newest turn and one more, the budget goes to the kayak turn
    def turn(i: int) -> int:
        return h.tokens[h.ids.index(f"u{i}")] + h.tokens[h.ids.index(f"a{i}")]
    room = turn(59) + max(turn(10), turn(42)) + 2
    w = build_window(hist, "time kayak", budget_tokens=room, model="gpt-4", recency_share=0.0)
    assert "u42" in ids(w) and "u10" not in ids(w)


async def test_a_summary_covers_only_the_turns_it_was_shown() -> None:
    """Long messages: one summary call reads what fits MAX_SOURCE_CHARS, oldest first, and
    records only those as covered; the next update goes on from there."""
    from tether.context.summary import MAX_SOURCE_CHARS, update_summary

    s = Session()
    s.messages = [Message(role="user" if i % 2 == 0 else "assistant", content=f"m{i} " + "x" * 500) for i in range(200)]
    shown: list[str] = []

    async def complete(msgs: list[dict]) -> str:
        shown.append(msgs[-1]["content"])
        return f"summary #{len(shown)}"

    w = window_for_session(s, "zzz", budget_tokens=300)
    await update_summary(s, w, complete)
    count = s.events[-1].data["count"]
    assert shown[0].startswith("user: m0 ") and len(shown[0]) <= MAX_SOURCE_CHARS + count
    assert f"m{count - 1} " in shown[0] and f"m{count} " not in shown[0]
    assert 0 < count < 150  # not every left-out message: they did not fit one call
    await update_summary(s, w, complete)
    assert shown[1].startswith(f"{'user' if count % 2 == 0 else 'assistant'}: m{count} ")


def test_a_misspelt_query_word_finds_the_word_one_edit_away() -> None:
    hist = chat(60, {8: "we finally won the chess tournament in Leeds after a long and tense final round against the favourite", 30: "my Xeonoblade save file got corrupted after forty hours of careful play on the hardest setting"})
    for q, want in [("what about that torunament?", "u8"), ("any news on Xenoblade?", "u30")]:
        assert want in ids(build_window(hist, q, budget_tokens=120))
        assert want not in ids(build_window(hist, q, budget_tokens=120, typo_weight=0))


def test_one_edit_and_the_vocabulary_lookup() -> None:
    from tether.context.spelling import Vocabulary, one_edit

    for a, b in [("recieved", "received"), ("funraiser", "fundraiser"), ("festival", "fesetival"), ("cat", "cut")]:
        assert one_edit(a, b) and one_edit(b, a)
    for a, b in [("north", "north"), ("comfort", "discomfort"), ("abcd", "badc"), ("tournament", "tornuament")]:
        assert not one_edit(a, b)
    v = Vocabulary()
    v.add("we received the fundraiser festival tournament results".split())
    assert v.near("recieved") == ["received"] and v.near("torunament") == ["tournament"]
    assert v.near("fundraisers") == ["fundraiser"] and v.near("festval") == ["festival"]
    assert v.near("zebra") == []


def test_a_common_word_absent_from_the_history_is_not_corrected() -> None:
    """"north" is one token in the tokenizer: a word, not a typo, so "worth" is not its match."""
    from tether.context import relevance

    idx = relevance.Index()
    for k, t in enumerate(["it was worth every penny", "the lake froze", "a quiet week"]):
        idx.append(f"m{k}", t)
    q = relevance.query_terms("trip north", "o200k_base", 1.0)
    assert relevance.corrected_terms("trip north", q, idx, 3, "o200k_base", 1.0) == q
    q2 = relevance.query_terms("the laake", "o200k_base", 1.0)
    assert "lake" in relevance.corrected_terms("the laake", q2, idx, 3, "o200k_base", 1.0)


def test_embedding_vectors_are_cached_on_the_index_and_extended(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The model itself is the extra's (not installed here); what tether adds is caching the
    message vectors on the session's index and extending them as messages arrive."""
    import numpy as np

    from tether.context import embeddings

    encoded: list[str] = []

    def fake_encode(texts: list[str]) -> np.ndarray:  # a stand-in for MiniLM: one unit vector per text
        encoded.extend(texts)
        out = np.zeros((len(texts), 4), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, len(t) % 4] = 1.0
        return out

    monkeypatch.setattr(embeddings, "encode", fake_encode)
    idx = relevance.Index()
    for k, t in enumerate(["a", "bb", "ccc", "dddd", "e"]):
        idx.append(f"m{k}", t)
    sims = embeddings.similarities(idx, "xy", 3)
    assert sims.tolist() == [0.0, 1.0, 0.0] and encoded == ["a", "bb", "ccc", "xy"]
    sims = embeddings.similarities(idx, "z", 5)
    assert sims.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0] and encoded[4:] == ["dddd", "e", "z"]
    assert embeddings.similarities(idx, "z", 2).shape == (2,) and encoded[7:] == ["z"]
