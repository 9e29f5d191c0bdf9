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
    """Decodes a growing list of token ids; ``push`` returns the text now safe to show.

    Decoding is incremental, as in Hugging Face text-generation-inference's
    ``decode_token``: each step decodes only the ids since the last settled
    point, ``decode(ids[prefix:])`` minus ``decode(ids[prefix:read])`` (a window
    that starts one piece back, so tokenizers that treat the first token of a
    text specially, e.g. a leading space, agree with the full decode). A step
    whose text ends in unfinished UTF-8 settles nothing and waits for the next.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        if any(not s for s in stop):
            raise ValueError("stop sequences must not be empty")
        self.decode, self.stop = decode, tuple(stop)
        self.ids: list[int] = []
        self.stopped = False
        self._text = ""  # settled text (complete characters)
        self._sent = 0  # characters of _text already released
        self._prefix = self._read = 0  # token offsets of the decoding window

    @property
    def text(self) -> str:
        """The completion so far (final once :attr:`stopped` or after :meth:`finish`)."""
        return self._text

    def push(self, token: int) -> str:
        """Add a generated token; return the text it releases (possibly empty)."""
        if self.stopped:
            raise RuntimeError("the text already ended at a stop sequence")
        self.ids.append(int(token))
        before = len(self._text)
        new = self._settle()
        if not new:
            return ""
        self._text += new
        # Only a stop sequence that ends in the new text can be new; the earliest wins.
        hits = [i for s in self.stop if (i := self._text.find(s, max(0, before - len(s) + 1)))
                >= 0]
        if hits:
            self._text, self.stopped = self._text[:max(min(hits), self._sent)], True
            return self._release(len(self._text))
        return self._release(len(self._text) - self._held_back())

    def finish(self) -> str:
        """Generation ended: release whatever was held back, unfinished UTF-8 included."""
        if not self.stopped and self._read < len(self.ids):
            head = self.decode(self.ids[self._prefix:self._read])
            self._text += self.decode(self.ids[self._prefix:])[len(head):]
            self._prefix = self._read = len(self.ids)
        return self._release(len(self._text))

    def _settle(self) -> str:
        head = self.decode(self.ids[self._prefix:self._read])
        window = self.decode(self.ids[self._prefix:])
        if len(window) <= len(head) or window.endswith(REPLACEMENT):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return window[len(head):]

    def _release(self, upto: int) -> str:
        upto = max(upto, self._sent)
        out, self._sent = self._text[self._sent:upto], upto
        return out

    def _held_back(self) -> int:
        """Characters at the end of the text that might still start a stop sequence."""
        held, text = 0, self._text
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), held, -1):
                if text.endswith(s[:n]):
                    held = n
                    break
        return held
