"""The answer streamed as it is written: the incremental scanner of the reply's `answer` string,
and the answer_delta / answer_reset events the pipeline yields while the model still writes.

The pipeline tests use test_pipeline.py's scripted generator (FAKE, labelled there), which hands
its reply over in small pieces from a worker thread, as the embedded backend does.
"""

from __future__ import annotations

import asyncio
import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from generation.reasoning.answer_stream import AnswerScanner, StreamedCall, streamed_as_final
from generation.reasoning.results import (
    AnswerDeltaEvent,
    AnswerEvent,
    AnswerResetEvent,
    DoneEvent,
    QueryEvent,
)
from generation.reasoning.values import Mode, QueryOptions
from tests.unit.test_pipeline import BIOS, ScriptedGenerator, pipeline, relevant, steps


def scan(pieces: list[str]) -> list[str]:
    scanner = AnswerScanner()
    return [scanner.feed(piece) for piece in pieces]


def chars(text: str) -> list[str]:
    return list(text)


# The scanner ------------------------------------------------------------------------------


def test_answer_first_is_decoded_piece_by_piece() -> None:
    reply = '{"answer": "Basic Input/Output System", "analysis": "BIOS is [1]."}'
    out = scan(chars(reply))
    assert "".join(out) == "Basic Input/Output System"
    # Each character of the answer comes out with the piece that holds it, not at the end.
    start = reply.index("Basic")
    assert out[start] == "B" and out[start + 1] == "a"


def test_analysis_first_then_the_answer() -> None:
    reply = '{"analysis": "The answer is in [1]: \\"answer\\": no.", "answer": "ROM"}'
    out = scan([reply[:30], reply[30:55], reply[55:]])
    assert "".join(out) == "ROM"
    assert out[:2] == ["", ""], "nothing before the answer's key"


def test_nothing_is_emitted_before_the_key_or_after_the_string() -> None:
    scanner = AnswerScanner()
    assert scanner.feed('{"analysis": "the answer is') == ""
    assert scanner.feed(' here", "answer') == ""
    assert scanner.feed('" :  "') == ""
    assert scanner.feed("Paris") == "Paris"
    assert scanner.feed('", "answer": "again"}') == ""
    assert scanner.done


def test_nested_keys_and_string_values_named_answer_are_passed_over() -> None:
    reply = json.dumps(
        {
            "relevance": {"answer": {"reason": "answer", "relevant": True}},
            "evidence": [{"answer": "no"}, "answer"],
            "note": "answer",
            "answer": "yes",
        }
    )
    assert "".join(scan(chars(reply))) == "yes"


def test_an_answer_that_is_not_a_string_streams_nothing() -> None:
    assert "".join(scan(chars('{"answer": null, "analysis": "x"}'))) == ""
    assert "".join(scan(chars('["answer", "x"]'))) == ""


def test_escapes_are_decoded_across_any_split() -> None:
    answer = 'say "hi"\\ \t/ \n café \u00e9 \U0001f600 \u65e5\u672c \x01 end'
    for ascii_only in (True, False):
        reply = json.dumps({"answer": answer, "analysis": "a"}, ensure_ascii=ascii_only)
        if ascii_only:
            assert "\\ud83d\\ude00" in reply, "the emoji is a surrogate pair"
        for cut in range(len(reply)):
            for second in (cut, min(cut + 3, len(reply))):
                pieces = [reply[:cut], reply[cut:second], reply[second:]]
                assert "".join(scan(pieces)) == answer, (cut, second)


def test_slash_escape_and_raw_control_characters_decode_as_json_loads() -> None:
    reply = '{"answer": "a\\/b\\bc\\fd\\re\nf", "analysis": ""}'
    expected = json.loads(reply, strict=False)["answer"]
    assert "".join(scan(chars(reply))) == expected


def test_a_lone_high_surrogate_is_kept_as_json_loads_keeps_it() -> None:
    for tail in ("x", "\\n", "\\u0041", "\\ud83d\\ude00", ""):
        reply = '{"answer": "a\\ud83d' + tail + '"}'
        assert "".join(scan(chars(reply))) == json.loads(reply)["answer"], tail


def test_random_answers_split_at_random_places() -> None:
    rng = random.Random(37)  # noqa: S311 - reproducible test data, not secrets
    alphabet = 'ab "\\/\n\t\u00e9\u65e5\U0001f600\u2028{}[],:'
    for _ in range(300):
        answer = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        fields = [("analysis", "x [1]"), ("answer", answer)]
        rng.shuffle(fields)
        reply = json.dumps(dict(fields), ensure_ascii=rng.random() < 0.5)
        cuts = sorted(rng.sample(range(len(reply) + 1), k=min(6, len(reply) + 1)))
        pieces = [reply[a:b] for a, b in zip([0, *cuts], [*cuts, len(reply)], strict=True)]
        assert "".join(scan(pieces)) == answer


def test_streamed_text_reads_as_the_final_answer_but_for_markers_and_spaces() -> None:
    assert streamed_as_final(" Basic Input/Output System [1]", "Basic Input/Output System")
    assert streamed_as_final("ROM [1, 2]\n", "ROM")
    assert not streamed_as_final("Basic Output", "Basic Input/Output System")


# The pipeline -----------------------------------------------------------------------------


def stream_run(
    g: ScriptedGenerator, question: str, mode: Mode = "steps", **options: Any
) -> tuple[list[QueryEvent], list[int]]:
    """The events of one query, and for each how many generations had returned when it came."""

    async def collect() -> tuple[list[QueryEvent], list[int]]:
        p = pipeline(g, {"bios.md": BIOS})
        query = QueryOptions(collection="docs", question=question, top_k=5, mode=mode, **options)
        events, finished = [], []
        async for event in p.run(query):
            events.append(event)
            finished.append(g.finished)
        return events, finished

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, collect()).result()


def deltas_after_last_reset(events: list[QueryEvent]) -> str:
    text = ""
    for event in events:
        if isinstance(event, AnswerResetEvent):
            text = ""
        elif isinstance(event, AnswerDeltaEvent):
            text += event.text
    return text


def test_the_answer_streams_while_the_model_writes_it_before_the_answer_event() -> None:
    final = {"answer": "Basic Input/Output System", "analysis": "BIOS is [1]."}
    g = ScriptedGenerator(steps(relevant(True), [("1.1", "expands")], final), stream=3)
    events, finished = stream_run(g, "What does BIOS stand for?")
    names = [e.name for e in events]
    first, last = names.index("answer_delta"), len(names) - 1 - names[::-1].index("answer_delta")
    assert names[:3] == ["retrieval", "relevance", "evidence"]
    assert set(names[first : last + 1]) == {"answer_delta"}
    assert names[last + 1 :] == ["analysis", "answer", "done"]
    # Yielded while the last generation was still running, not replayed after it.
    assert finished[first] == 2 and g.finished == 3
    deltas = [e for e in events if isinstance(e, AnswerDeltaEvent)]
    assert len(deltas) > 3
    assert "".join(d.text for d in deltas) == "Basic Input/Output System"
    answer = events[-2]
    assert isinstance(answer, AnswerEvent) and answer.answer == "Basic Input/Output System"
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.result.usage.completion_tokens == 30


def test_a_repaired_reply_resets_what_it_streamed() -> None:
    relevance, evidence, good = steps(
        relevant(True),
        [("1.1", "expands")],
        {"answer": "Basic Input/Output System", "analysis": "BIOS is [1]."},
    )
    broken = json.dumps({"answer": "Basic Output", "analysis": 5})  # analysis not a string
    g = ScriptedGenerator([relevance, evidence, broken, good], stream=4)
    events, _ = stream_run(g, "What does BIOS stand for?")
    names = [e.name for e in events]
    assert names.count("answer_reset") == 1
    reset = names.index("answer_reset")
    before = "".join(e.text for e in events[:reset] if isinstance(e, AnswerDeltaEvent))
    assert before == "Basic Output"
    reset_event = events[reset]
    assert isinstance(reset_event, AnswerResetEvent) and reset_event.data() == {"reason": "repair"}
    assert deltas_after_last_reset(events) == "Basic Input/Output System"
    answer = events[-2]
    assert isinstance(answer, AnswerEvent) and answer.answer == "Basic Input/Output System"


def test_an_answer_asked_again_resets_the_markers_it_streamed() -> None:
    relevance, evidence, markers = steps(
        relevant(True), [("1.1", "expands")], {"answer": "[1]", "analysis": "BIOS is [1]."}
    )
    again = json.dumps({"answer": "Basic Input/Output System", "analysis": "BIOS is [1]."})
    g = ScriptedGenerator([relevance, evidence, markers, again], stream=2)
    events, _ = stream_run(g, "What does BIOS stand for?")
    resets = [e for e in events if isinstance(e, AnswerResetEvent)]
    assert [r.reason for r in resets] == ["answer_again"]
    assert deltas_after_last_reset(events) == "Basic Input/Output System"
    assert g.calls == 4


@pytest.mark.parametrize(
    ("mode", "reply"),
    [
        ("one_call", {"answer": "ROM", "citations": ["1.2"]}),
        ("closed_book", {"answer": "ROM"}),
        (
            "single_pass",
            {
                "relevance": relevant(True),
                "evidence": [{"sentence": "1.2", "reason": "says where"}],
                "analysis": "It is in ROM [1].",
                "answer": "ROM",
            },
        ),
    ],
)
def test_the_other_modes_stream_their_answer(mode: Mode, reply: dict[str, Any]) -> None:
    g = ScriptedGenerator([json.dumps(reply)], stream=1)
    events, _ = stream_run(g, "Where is the BIOS stored?", mode)
    deltas = [e for e in events if isinstance(e, AnswerDeltaEvent)]
    assert "".join(d.text for d in deltas) == "ROM"
    names = [e.name for e in events]
    assert names.index("answer_delta") < names.index("answer")


def test_a_generator_that_does_not_stream_sends_no_deltas() -> None:
    final = {"answer": "Basic Input/Output System", "analysis": "BIOS is [1]."}
    g = ScriptedGenerator(steps(relevant(True), [("1.1", "expands")], final))
    events, _ = stream_run(g, "What does BIOS stand for?")
    assert [e.name for e in events] == [
        "retrieval",
        "relevance",
        "evidence",
        "analysis",
        "answer",
        "done",
    ]


def test_leaving_the_stream_cancels_the_generation() -> None:
    started, cancelled = asyncio.Event(), []

    async def generation(_stream: object) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    async def leave_early() -> None:
        call = StreamedCall(generation)
        events = call.__aiter__()
        reader = asyncio.ensure_future(anext(events))
        await started.wait()
        reader.cancel()  # the client went away while the model writes
        with pytest.raises(asyncio.CancelledError):
            await reader

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, leave_early()).result()
    assert cancelled == [True]
