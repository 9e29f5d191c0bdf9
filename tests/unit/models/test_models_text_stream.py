"""TextStream: stop sequences across tokens, nothing shown that is taken back, UTF-8 bytes."""

from __future__ import annotations

import pytest

from shoestring.models.tokenizers import ByteTokenizer
from shoestring.models.text_stream import TextStream

WORDS = ["Hel", "lo", " wor", "ld", "\n", "\n", "Bye"]


def stream_of(pieces: list[str], stop: list[str]) -> tuple[list[str], TextStream]:
    ts = TextStream(lambda ids: "".join(pieces[i] for i in ids), stop)
    shown = []
    for i in range(len(pieces)):
        shown.append(ts.push(i))
        if ts.stopped:
            break
    shown.append(ts.finish())
    return shown, ts


def test_without_stop_sequences_every_piece_is_shown_at_once():
    shown, ts = stream_of(WORDS, [])
    assert shown[:-1] == WORDS and ts.text == "".join(WORDS) and not ts.stopped


def test_a_stop_sequence_split_across_tokens_ends_the_text_before_it():
    shown, ts = stream_of(WORDS, ["\n\n"])
    assert ts.stopped and ts.text == "Hello world" and "".join(shown) == ts.text
    assert len(ts.ids) == 6  # the token that completed the stop was generated (and is billed)
    assert shown[4] == ""  # the first newline is held back: it might start the stop


def test_a_held_back_prefix_that_does_not_become_a_stop_is_released():
    shown, ts = stream_of(["ab", "X", "abc", "d"], ["Xy"])
    assert shown == ["ab", "", "Xabc", "d", ""] and ts.text == "abXabcd"


def test_the_earliest_of_several_stop_sequences_wins_even_inside_one_token():
    shown, ts = stream_of(["one two", " three four"], ["four", "two"])
    assert ts.text == "one " and "".join(shown) == "one "
    _, overlapping = stream_of(["one two three"], ["two", "ne t"])
    assert overlapping.text == "o"


def test_decoding_is_incremental_and_agrees_with_a_decoder_that_strips_a_leading_space():
    pieces = [" Hello", " big", " wor", "ld"]
    calls = []

    def decode(ids: list[int]) -> str:  # like sentencepiece: a text's first space is dropped
        calls.append(len(ids))
        return "".join(pieces[i] for i in ids).removeprefix(" ")

    ts = TextStream(decode)
    shown = [ts.push(i) for i in range(4)] + [ts.finish()]
    assert "".join(shown) == ts.text == "Hello big world"
    assert max(calls) <= 2  # windows of a token or two, not the whole text each step


def test_unfinished_utf8_is_held_until_its_last_byte():
    tok = ByteTokenizer()
    ts = TextStream(tok.decode)
    pieces = [ts.push(b) for b in "né€".encode()]
    assert pieces == ["n", "", "é", "", "", "€"]
    cut = TextStream(tok.decode)
    assert [cut.push(b) for b in "€".encode()[:2]] == ["", ""]
    # Generation ended mid-character: the decoder's replacement character is shown.
    assert cut.finish() == "€".encode()[:2].decode(errors="replace") == "\ufffd"


def test_empty_stop_sequences_are_refused_and_pushing_after_a_stop_is_a_bug():
    with pytest.raises(ValueError, match="must not be empty"):
        TextStream(str, [""])
    _, ts = stream_of(WORDS, ["lo"])
    with pytest.raises(RuntimeError, match="already ended"):
        ts.push(0)
