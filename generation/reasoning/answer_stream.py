"""The answer's text as the model writes it: the `answer` string of a JSON reply decoded piece by
piece, and the answer_delta / answer_reset events a step that writes the answer yields while its
generation still runs.

The generation runs as a task; the backend hands each new piece of the reply to a text sink
(from llama.cpp's worker thread, or the event loop for an HTTP backend), which forwards it to
the loop with `call_soon_threadsafe`; the scanner picks out the answer's characters and queues
them as events, and `StreamedCall` yields them until the task is done. Cancelling the iteration
(the client went away) cancels the task, and with it the generation.

A reply that is discarded (repaired, or asked again) had its text sent already: the next attempt
is announced by an answer_reset event before its own deltas. The final `answer` event, after the
checks, is authoritative either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from generation.llm.generator import TextSink
from generation.reasoning.replies import strip_answer_markers
from generation.reasoning.results import AnswerDeltaEvent, AnswerResetEvent, AnswerTextEvent

T = TypeVar("T")

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_JSON_SPACE = " \t\n\r"


class _JsonString:
    """One JSON string decoded as its characters come, after its opening quote: escapes,
    \\uXXXX and surrogate pairs included, however the pieces split them. Decodes as
    `json.loads(..., strict=False)` does: raw control characters are kept, and a high surrogate
    without its low half stays alone."""

    def __init__(self) -> None:
        self.closed = False
        self._escape = False
        self._hex: str | None = None  # the digits of a \u escape so far
        self._high: int | None = None  # a high surrogate waiting for its low half

    def feed(self, ch: str) -> str:
        """The characters `ch` completes ("" while an escape is still incomplete)."""
        if self._hex is not None:
            self._hex += ch
            if len(self._hex) < 4:
                return ""
            try:
                code = int(self._hex, 16)
            except ValueError:  # not JSON: the reply fails to parse and is repaired anyway
                code = 0xFFFD
            self._hex = None
            return self._code_point(code)
        if self._escape:
            self._escape = False
            if ch == "u":
                self._hex = ""
                return ""
            return self._lone_high() + _ESCAPES.get(ch, ch)
        if ch == "\\":
            self._escape = True
            return ""
        if ch == '"':
            self.closed = True
            return self._lone_high()
        return self._lone_high() + ch

    def _code_point(self, code: int) -> str:
        if 0xD800 <= code < 0xDC00:
            before = self._lone_high()
            self._high = code
            return before
        if 0xDC00 <= code < 0xE000 and self._high is not None:
            high, self._high = self._high, None
            return chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00))
        return self._lone_high() + chr(code)

    def _lone_high(self) -> str:
        """A waiting high surrogate that no low half follows, as json.loads keeps it."""
        if self._high is None:
            return ""
        high, self._high = self._high, None
        return chr(high)


class AnswerScanner:
    """The decoded characters of the top-level `"answer"` string of a JSON object written piece
    by piece (`feed` returns those each piece adds). Nothing comes out before the key, nor after
    the string's closing quote; keys of nested objects and string values that merely contain
    the word are passed over. The key may come first or last (`{"answer": …, "analysis": …}`
    or the other way round)."""

    def __init__(self, key: str = "answer") -> None:
        self._key = key
        self._open: list[str] = []  # the containers around the current position: "{" or "["
        self._expect_key = False  # the next string at the top level is a key
        self._string: _JsonString | None = None
        self._role = ""  # what the open string is: "key", "answer" or "other"
        self._key_text: list[str] = []
        self._after_key = ""  # after the answer's key: "colon", then "value"
        self.done = False

    def feed(self, piece: str) -> str:
        out: list[str] = []
        for ch in piece:
            if self.done:
                break
            if self._string is not None:
                text = self._string.feed(ch)
                if self._role == "answer":
                    out.append(text)
                elif self._role == "key":
                    self._key_text.append(text)
                if self._string.closed:
                    self._close_string()
            elif self._after_key:
                self._after_answer_key(ch)
            else:
                self._structure(ch)
        return "".join(out)

    def _structure(self, ch: str) -> None:
        top_object = self._open == ["{"]
        if ch == '"':
            self._open_string("key" if top_object and self._expect_key else "other")
        elif ch in "{[":
            self._open.append(ch)
            self._expect_key = self._open == ["{"]
        elif ch in "}]":
            if self._open:
                self._open.pop()
            self._expect_key = False
        elif ch == "," and top_object:
            self._expect_key = True

    def _after_answer_key(self, ch: str) -> None:
        if ch in _JSON_SPACE:
            return
        if self._after_key == "colon" and ch == ":":
            self._after_key = "value"
        elif self._after_key == "value" and ch == '"':
            self._after_key = ""
            self._open_string("answer")
        else:  # the answer is not a string: nothing to stream
            self.done = True

    def _open_string(self, role: str) -> None:
        self._string = _JsonString()
        self._role = role
        self._key_text = []
        self._expect_key = False

    def _close_string(self) -> None:
        self._string = None
        if self._role == "answer":
            self.done = True
        elif self._role == "key" and "".join(self._key_text) == self._key:
            self._after_key = "colon"


class AnswerStream:
    """The answer events of one streamed step: a text sink for each generation of the answer,
    and the events their text makes, queued for the pipeline. Used on the event loop's thread;
    only the sinks are called from elsewhere."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[AnswerTextEvent] = asyncio.Queue()
        self._sent = False  # the current attempt's text went out in answer_delta events

    def sink(self) -> TextSink:
        """What the generator hands one generation's text to (a reply of its own, scanned
        from its start)."""
        scanner = AnswerScanner()

        def scan(piece: str) -> None:
            text = scanner.feed(piece)
            if text:
                self._sent = True
                self.queue.put_nowait(AnswerDeltaEvent(text))

        def on_text(piece: str) -> None:
            try:
                self._loop.call_soon_threadsafe(scan, piece)
            except RuntimeError:  # the loop is closed: nobody reads this answer any more
                pass

        return on_text

    def discard(self, reason: str) -> None:
        """The reply written so far does not count (`reason`: why another is generated): when
        its answer was sent, an answer_reset event says so before the next attempt's text."""
        if self._sent:
            self.queue.put_nowait(AnswerResetEvent(reason))
            self._sent = False


class StreamedCall(Generic[T]):
    """`work` (given the AnswerStream to generate with) run as a task: iterating yields the
    answer events it makes while it runs, then `value` is its result. Its exception is raised at
    the end of the iteration; leaving the iteration early (cancelled, or closed) cancels it."""

    def __init__(self, work: Callable[[AnswerStream], Awaitable[T]]) -> None:
        self._work = work
        self._value: list[T] = []

    @property
    def value(self) -> T:
        if not self._value:
            raise RuntimeError("the streamed call has not finished")
        return self._value[0]

    async def __aiter__(self) -> AsyncIterator[AnswerTextEvent]:
        stream = AnswerStream(asyncio.get_running_loop())
        task = asyncio.ensure_future(self._work(stream))
        getter: asyncio.Future[AnswerTextEvent] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(stream.queue.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    break  # the work is done; what it queued last is read below
                yield getter.result()
            getter.cancel()
            # A sink's last pieces were scanned before the work's result arrived (both go
            # through the loop's queue of callbacks, in order).
            while not stream.queue.empty():
                yield stream.queue.get_nowait()
            self._value = [task.result()]
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            if not task.done():
                task.cancel()  # the generator stops at its next token
                await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: raised above, or of no interest once abandoned


def streamed_as_final(streamed: str, final: str) -> bool:
    """Whether the text sent as the answer was written reads as the final answer: the same
    once evidence markers are dropped and whitespace is collapsed (as the checks trim and
    drop markers)."""
    return " ".join(strip_answer_markers(streamed).split()) == " ".join(final.split())
