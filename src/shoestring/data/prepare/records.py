"""Records as preparation sees them: batches of valid records plus rejections.

A reader turns a source into :class:`Batch` es of at most ``chunk`` records.
It decodes (bytes, JSON, CSV cells, image files) and rejects what cannot be
decoded; :mod:`.validate` then applies value rules. Every record read is
either in a batch or in its ``rejects``, each with its origin (file and line,
or file and index), so that every input record is accounted for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Kind = Literal["image", "table", "text"]

# Given-split codes carried per record.
NO_SPLIT, GIVEN_TRAIN, GIVEN_TEST = 0, 1, 2


@dataclass(frozen=True)
class Reject:
    """A record that was not kept as valid: where it came from and why."""

    origin: str
    reason: str
    detail: str

    def to_json(self) -> dict:
        return {"origin": self.origin, "reason": self.reason, "detail": self.detail}


@dataclass
class Batch:
    """Valid records of one chunk, in reading order, and the chunk's rejections.

    ``labels`` hold each record's label as text (``None``: the record has
    none); ``given`` the source's own split (``NO_SPLIT``, ``GIVEN_TRAIN``,
    ``GIVEN_TEST``). Exactly one of ``x`` (images ``[n, C, H, W]``, tables
    ``[n, d]`` float32) and ``texts`` is set. ``side_texts`` are text cells of
    tables, scanned for PII but not kept as features. ``groups`` hold each record's
    values of the group columns (``--group``), never features either.
    """

    origins: list[str]
    labels: list[str | None]
    given: np.ndarray
    x: np.ndarray | None = None
    texts: list[str] | None = None
    side_texts: list[str] | None = None
    groups: list[tuple[str, ...]] | None = None
    rejects: list[Reject] = field(default_factory=list)
    converted: int = 0

    def __len__(self) -> int:
        return len(self.origins)

    def keep(self, mask: np.ndarray) -> Batch:
        """The records where ``mask`` is true (rejections and counts carried over)."""
        idx = np.flatnonzero(mask)
        pick = (lambda seq: [seq[i] for i in idx]) if len(idx) != len(mask) else list
        return Batch(
            origins=pick(self.origins), labels=pick(self.labels), given=self.given[idx],
            x=None if self.x is None else self.x[idx],
            texts=None if self.texts is None else pick(self.texts),
            side_texts=None if self.side_texts is None else pick(self.side_texts),
            groups=None if self.groups is None else pick(self.groups),
            rejects=self.rejects, converted=self.converted)


@dataclass(frozen=True)
class RecordSource:
    """An opened source: what kind of records it holds and how to read them.

    ``files`` are the inputs whose content decides the preparation key;
    ``batches(chunk)`` reads the source from the start each time it is called.
    """

    spec: str
    kind: Kind
    files: tuple[Path, ...]
    batches: Callable[[int], Iterator[Batch]]
    has_given_splits: bool = False
    feature_names: tuple[str, ...] | None = None
    class_names: dict[str, str] | None = None  # label text -> display name
    label_column: str | None = None
    group_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    raw_scale: float | None = None  # None: 1/255 for 8-bit images, else 1
    text_unit: str | None = None    # text: sources: line, paragraph or file


def empty_batch() -> Batch:
    return Batch(origins=[], labels=[], given=np.zeros(0, dtype=np.int8))
