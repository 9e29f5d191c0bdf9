"""``text:`` corpora keep their structure: paragraphs as the unit, short units exempt
(issue 16 item 3: a play lost every repeated speaker tag to line-by-line dedup)."""

from __future__ import annotations

import random

import pytest

from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.data.prepare.read_text import choose_text_unit
from shoestring.data.prepare.shards import ShardSet

SPEAKERS = ("HAMLET.", "OPHELIA.", "POLONIUS.", "GERTRUDE.", "HORATIO.")
REFRAIN = ("Double, double toil and trouble; fire burn and cauldron bubble, "
           "by the pricking of my thumbs.")


def write_play(path, speeches=300, seed=0):
    """A generated play: speaker tags and stage directions recur, speeches do not,
    and one long refrain is pasted three times (two copies are true duplicates)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(400)]
    paragraphs = ["THE TRAGEDY OF GENERATED TEXT", "ACT I."]
    for i in range(speeches):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 9)))
                 for _ in range(rng.randint(1, 3))]
        paragraphs.append("\n".join([rng.choice(SPEAKERS)] + lines))
        if i % 25 == 0:
            paragraphs.append(rng.choice(["[Exit.]", "[Exeunt.]", "[Aside.]"]))
        if i in (50, 150, 250):
            paragraphs.append("ALL.\n" + REFRAIN)
    path.write_text("\n\n".join(paragraphs) + "\n")
    return paragraphs


def kept_texts(out):
    shards = ShardSet(out / "shards")
    return [t for s in ("train", "val", "test") for t in shards.load(s)[0]]


def nonblank_lines(texts):
    return [line for t in texts for line in t.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    root = tmp_path_factory.mktemp("play")
    paragraphs = write_play(root / "play.txt")
    result = prepare(resolve_prepare_config({"source": f"text:{root / 'play.txt'}",
                                             "out": root / "out"}))
    return root, paragraphs, result


def test_auto_reads_a_play_by_paragraph_and_says_why(play):
    _, paragraphs, result = play
    text = result.report["text"]
    assert text["unit"] == "paragraph" and "auto: blank lines separate blocks" in text["why"]
    assert result.report["input"] == len(paragraphs)


def test_speaker_tags_and_stage_directions_survive(play):
    root, paragraphs, result = play
    r = result.report
    # Only the pasted refrain is a duplicate: 2 of its 3 copies go.
    assert r["dropped"]["exact_duplicate"] == 2 and r["dropped"]["near_duplicate"] == 0
    kept = nonblank_lines(kept_texts(root / "out"))
    source = nonblank_lines(paragraphs)
    assert len(kept) == len(source) - 2 * 2  # the two dropped copies had two lines each
    for tag in SPEAKERS + ("[Exit.]", "[Exeunt.]"):
        assert kept.count(tag) == source.count(tag), tag
    assert r["text"]["short_repeats_kept"] > 0


def test_shards_keep_paragraphs_apart_with_blank_lines(play):
    root, paragraphs, _ = play
    kept = kept_texts(root / "out")
    assert set(kept) <= set(paragraphs) and len(set(kept)) == len(set(paragraphs))
    body = (root / "out" / "shards" / "train" / "00000.txt").read_text()
    first = [p for p in paragraphs if p in kept][:2]
    assert body.startswith(first[0] + "\n\n")


def test_line_by_line_dedup_is_still_there_when_asked(play, tmp_path):
    root, paragraphs, _ = play
    r = prepare(resolve_prepare_config({"source": f"text:{root / 'play.txt'}",
                                        "out": tmp_path / "lines", "text_unit": "line",
                                        "dedup_min_chars": 0})).report
    source = nonblank_lines(paragraphs)
    assert "text" in r and r["text"]["unit"] == "line"
    # What the previous release did by default: each repeated tag is a "duplicate".
    assert r["dropped"]["exact_duplicate"] >= len(source) - len(set(source))
    assert nonblank_lines(kept_texts(tmp_path / "lines")).count("HAMLET.") == 1


def test_choose_text_unit(tmp_path):
    (tmp_path / "docs.txt").write_text("one document\nanother document\n\n")
    assert choose_text_unit((tmp_path / "docs.txt",))[0] == "line"
    (tmp_path / "spaced.txt").write_text("one\n\ntwo\n\nthree\n")
    assert choose_text_unit((tmp_path / "spaced.txt",))[0] == "line"
    (tmp_path / "prose.txt").write_text("a\nb\nc\n\nd\ne\n")
    unit, why = choose_text_unit((tmp_path / "prose.txt",))
    assert unit == "paragraph" and "2.5 lines" in why
