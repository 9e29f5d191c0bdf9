"""Generated tokens to text, piece by piece, with stop sequences.

A streamed completion must never show a client text it would take back: the
start of a stop sequence (``"\\n\\n"`` when only one ``"\\n"`` has come), or half
of a multi-byte character (byte and byte-level BPE tokenizers produce UTF-8
one byte at a time). :class:`TextStream` therefore holds back, after each
token, the longest tail of the text that could still become a stop sequence
and any trailing replacement characters of unfinished UTF-8, and releases
them once the next tokens settle the question (or generation ends).

As in OpenAI's API, the returned text stops *before* the stop sequence.

>>> ts = TextStream(lambda ids: "".join(chr(i) for i in ids), stop=["\\n\\n"])
>>> [ts.push(ord(c)) for c in "hi\\nyo\\n\\n"]
['h', 'i', '', '\\ny', 'o', '', '']
>>> ts.stopped, ts.text
(True, 'hi\\nyo')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT = "\ufffd"  # what a decoder shows for bytes that are not (yet) valid UTF-8


class TextStream:
    """Decodes a growing list of token ids; ``push`` returns the text now safe to show."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        if any(not s for s in stop):
            raise ValueError("stop sequences must not be empty")
        self.decode, self.stop = decode, tuple(stop)
        self.ids: list[int] = []
        self.stopped = False
        self._text = ""
        self._sent = 0  # characters of _text already released

    @property
    def text(self) -> str:
        """The completion so far (final once :attr:`stopped` or after :meth:`finish`)."""
        return self._text

    def push(self, token: int) -> str:
        """Add a generated token; return the text it releases (possibly empty)."""
        if self.stopped:
            raise RuntimeError("the text already ended at a stop sequence")
        self.ids.append(int(token))
        text = self.decode(self.ids)
        hit = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if hit >= 0:
            self.stopped = True
            self._text = text[:max(hit, self._sent)]
            return self._release(len(self._text))
        self._text = text
        return self._release(len(text) - self._held_back(text))

    def finish(self) -> str:
        """Generation ended: release whatever was held back."""
        return self._release(len(self._text))

    def _release(self, upto: int) -> str:
        upto = max(upto, self._sent)
        out, self._sent = self._text[self._sent:upto], upto
        return out

    def _held_back(self, text: str) -> int:
        """Characters at the end of ``text`` that might still change or start a stop."""
        held = len(text) - len(text.rstrip(REPLACEMENT))
        body = text[:len(text) - held]
        for s in self.stop:
            for n in range(min(len(s) - 1, len(body)), 0, -1):
                if body.endswith(s[:n]):
                    held = max(held, len(text) - len(body) + n)
                    break
        return held
