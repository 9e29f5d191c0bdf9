"""The typed configuration of ``shoestring data prepare`` (and ``data leakage``).

One :class:`PrepareConfig` is at once the Python API, the TOML schema
(``prepare.toml``, saved beside every prepared folder) and the CLI flags
(``--near-threshold`` is ``near_threshold``). :func:`resolve_prepare_config`
validates everything and reports every problem in one :class:`ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from shoestring.config import StrictConfig, validate_config
from shoestring.data.sources import DEFAULT_TEST_FRACTION

PII_TYPES = ("email", "phone", "credit_card", "iban", "ip_address", "us_ssn", "secret")


_Strict = StrictConfig


class DetectConfig(_Strict):
    """What both ``prepare`` and ``leakage`` need to read records and compare them."""

    text_field: str = Field("text", description="JSONL field holding the text")
    label_field: str | None = Field(
        None, description="JSONL label field, or the CSV/Parquet column to predict "
        "(images take labels from folder names or IDX label files)")
    text_unit: Literal["auto", "line", "paragraph", "file"] = Field(
        "auto", description="text: sources: the record (and unit of deduplication): a line, a "
        "paragraph (lines up to a blank line) or a whole .txt file; auto: paragraph when "
        "blank lines separate blocks of several lines (plays, books), else line")
    dedup_min_chars: int = Field(
        64, ge=0, description="text: sources: units shorter than this many characters are "
        "never removed as duplicates (a speaker tag or '[Exit.]' recurs by design)")
    near_threshold: float = Field(
        0.8, gt=0.0, le=1.0, description="text near-duplicates: word n-gram Jaccard at or "
        "above this (every candidate verified by its true Jaccard)")
    ngram: int = Field(3, ge=1, le=16, description="words per shingle")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations")
    lsh_recall: float = Field(
        0.999, gt=0.5, lt=1.0, description="chance that a pair exactly at the threshold "
        "becomes an LSH candidate (sets the bands)")
    phash_distance: int = Field(4, ge=0, le=16,
                                description="images: pHash Hamming distance for candidates")
    pixel_similarity: float = Field(
        0.95, ge=0.0, le=1.0, description="images: weighted Jaccard of pixel intensities at or "
        "above which a pHash candidate pair is a near-duplicate")
    chunk_records: int = Field(10_000, ge=1, description="records per processing chunk "
                               "(bounds memory)")


class PrepareConfig(DetectConfig):
    """Everything ``shoestring data prepare`` needs; ``out`` is the prepared folder."""

    source: str = Field(..., description="idx:DIR, images:DIR, csv:PATH, parquet:PATH, "
                        "text:PATH, jsonl:PATH, or any other data source")
    out: Path = Field(..., description="prepared folder (a data source: prepared:DIR)")
    task: Literal["classification", "regression"] | None = Field(
        None, description="tables: inferred from the label column when unset")
    labels: list[str] | None = Field(
        None, description="allowed labels; records with any other label are quarantined")
    ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="tables: allowed [low, high] per column, "
        "e.g. age=0:120; values outside are quarantined")
    group: list[str] = Field(
        default_factory=list, description="tables: group columns (e.g. sex,age_band) kept "
        "beside each split for the fairness audit, never as features")
    min_chars: int = Field(1, ge=1, description="texts shorter than this are quarantined")
    image_mode: Literal["auto", "L", "RGB"] = Field(
        "auto", description="images: colour mode; 'auto' takes the first image's")
    exact: bool = Field(True, description="remove exact duplicates (hash of normalized content)")
    near: bool = Field(True, description="remove near-duplicates (MinHash-LSH text, pHash images)")
    keep_duplicates: bool = Field(
        False, description="find duplicates and keep each cluster on one side of the split, "
        "but remove nothing")
    max_cluster: int = Field(
        100, ge=2, description="near-duplicate clusters larger than this are kept whole and "
        "listed for review (guards against chained clusters wiping out a source)")
    pii: Literal["off", "report", "mask", "redact", "hash", "encrypt"] = Field(
        "report", description="PII in text: report counts, or rewrite it")
    pii_types: list[str] = Field(list(PII_TYPES), description="PII types to look for")
    pii_key_env: str = Field(
        "SHOESTRING_PII_KEY", description="environment variable holding the hash salt or the "
        "AES key (hex or base64; never written by Shoestring)")
    pii_key_file: Path | None = Field(None, description="file holding the salt or key instead")
    encrypt: bool = Field(False, description="encrypt every file of the prepared folder "
                          "(AES-256-GCM; key from --key-file or $SHOESTRING_ENCRYPTION_KEY)")
    label_issues: bool = Field(True, description="flag likely mislabeled examples (confident "
                               "learning on cross-validated probabilities)")
    drop_label_issues: bool = Field(False, description="remove flagged examples too")
    cv_folds: int = Field(5, ge=2, le=20, description="folds for the label-issue model")
    split: Literal["auto", "given", "random"] = Field(
        "auto", description="auto: the source's own train/test if it has them, else random")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="validation share")
    test_fraction: float = Field(DEFAULT_TEST_FRACTION, ge=0.0, lt=1.0,
                                 description="test share (random split only)")
    seed: int = Field(0, description="seeds the split and the label-issue folds")
    tokenizer: Literal["char", "byte", "bpe"] | None = Field(
        None, description="text: tokenizer that training should use (recorded)")
    shard_mb: int = Field(64, ge=1, description="target shard size in MiB")
    force: bool = Field(False, description="recompute even when an identical preparation "
                        "exists, and replace a different one in OUT")

    @model_validator(mode="after")
    def _cross_field(self) -> PrepareConfig:
        problems = []
        if self.split == "random" and self.val_fraction + self.test_fraction >= 1.0:
            problems.append(f"val_fraction + test_fraction must be below 1, got "
                            f"{self.val_fraction} + {self.test_fraction}")
        unknown = sorted(set(self.pii_types) - set(PII_TYPES))
        if unknown:
            problems.append(f"pii_types: unknown {', '.join(unknown)} "
                            f"(known: {', '.join(PII_TYPES)})")
        for col, (lo, hi) in self.ranges.items():
            if not lo <= hi:
                problems.append(f"ranges.{col}: low {lo} is above high {hi}")
        if self.drop_label_issues and not self.label_issues:
            problems.append("drop_label_issues needs label_issues on")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def key_fields(self) -> dict[str, Any]:
        """The fields that decide the output (everything but where and whether to redo)."""
        # ``encrypt`` joins the key only when set, so older folders keep their key.
        return self.model_dump(mode="json", exclude={"out", "force", "chunk_records"} |
                               (set() if self.encrypt else {"encrypt"}))


class LeakageConfig(DetectConfig):
    """``shoestring data leakage TRAIN TEST``: which records of TEST also appear in TRAIN."""

    train: str = Field(..., description="the training data source")
    test: str = Field(..., description="the evaluation data source")
    examples: int = Field(20, ge=0, description="how many matches to list")


def _resolve(model, values: dict[str, Any], command: str):
    clean = {k: v for k, v in values.items() if v is not None}
    return validate_config(model, clean,
                           hint=f"fix the values above (see 'shoestring data {command} --help')")


def resolve_prepare_config(values: dict[str, Any]) -> PrepareConfig:
    """Validate ``values`` (``None`` means 'not given') into a :class:`PrepareConfig`.

    >>> resolve_prepare_config({"source": "digits", "out": "p"}).near_threshold
    0.8
    """
    return _resolve(PrepareConfig, values, "prepare")


def resolve_leakage_config(values: dict[str, Any]) -> LeakageConfig:
    return _resolve(LeakageConfig, values, "leakage")
