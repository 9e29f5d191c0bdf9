"""``shoestring.compress(config)``: the Python API behind ``shoestring compress``.

In order: check the config, the run and the methods (every problem at once),
load the parent run and its data, build every candidate (each a chain of
methods), save each as a run folder in a temporary folder (its size on disk
is that file's size), score each on the held-out split, time every
candidate at every batch size in interleaved rounds, rank them, then write
the new run folder — the chosen model, ``compress/candidates.json``,
``compress/config.json`` — and rename it into place. With no candidate
within the budget, the folder holds the table and no model. The run is
recorded in the ledger as kind ``compress`` with the parent's id.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shoestring.compress.config import (
    METRICS,
    CompressConfig,
    Distill,
    check,
    parse_methods,
    raise_problems,
)
from shoestring.compress.measure import (
    count_params,
    forward_call,
    generation_tokens_per_second,
    time_interleaved,
)
from shoestring.compress.session import Progress, Session, SilentProgress
from shoestring.compress.table import document, rank
from shoestring.compress.workload import load_workload, metric_problems
from shoestring.crypto.folder import encrypt_output
from shoestring.errors import ShoestringError
from shoestring.io import atomic_write_bytes, fsync_dir, is_encrypted_path, read_bytes
from shoestring.models.card import Lineage
from shoestring.models.run_folder import RunFolder, read_card, save_run

COMPRESS_DIR = "compress"
CANDIDATES = "candidates.json"
CONFIG_JSON = "config.json"
# Greedy tokens generated per timing of a language model (batch 1, a 8-token prompt).
GENERATION_TOKENS = 32


@dataclass(frozen=True)
class CompressResult:
    out_dir: Path
    chosen: str | None          # None: no candidate met the budget (no model written)
    table: dict[str, Any]       # the candidates.json document
    run_id: str | None

    @property
    def candidates_path(self) -> Path:
        return self.out_dir / COMPRESS_DIR / CANDIDATES


def validate(config: CompressConfig) -> list:
    """Every problem with the config, the run, the teacher and the methods, at once; the
    method chains when there is none."""
    problems = check(config) + metric_problems(config.run, config.metric)
    family = None
    try:
        card = read_card(config.run)
        family = card.family
    except ShoestringError:
        card = None
    chains, method_problems = parse_methods(config.methods, family or "")
    problems += method_problems
    if config.teacher is not None and card is not None:
        try:
            teacher = read_card(config.teacher)
            if (teacher.task, teacher.outputs.size) != (card.task, card.outputs.size):
                problems.append(
                    f"teacher '{config.teacher}' is a {teacher.task.value} model with "
                    f"{teacher.outputs.size} outputs, the run a {card.task.value} model with "
                    f"{card.outputs.size}: a teacher must solve the same task")
            elif (teacher.inputs, teacher.preprocessing) != (card.inputs, card.preprocessing):
                problems.append(f"teacher '{config.teacher}' takes other inputs than the run "
                                "(shape, dtype or preprocessing differ): train both on the "
                                "same data")
        except ShoestringError as exc:
            problems.append(f"teacher: {exc.message}")
        if not any(isinstance(m, Distill) for chain in chains for m in chain):
            problems.append("--teacher is given but no method distills (add --methods distill)")
    if config.target == "cuda":
        problems.append("--target cuda: the candidates are onnxruntime CPU graphs; timing for "
                        "a GPU is not built yet")
    raise_problems(problems)
    return chains


def compress(config: CompressConfig, *, ledger: Any = "auto", progress: Progress | None = None,
             clock: Callable[[], float] = time.perf_counter,
             environ: Mapping[str, str] | None = None, workspace: Path | None = None
             ) -> CompressResult:
    """Compress the run ``config.run`` into ``config.out`` under the accuracy guard.

    >>> from shoestring.compress import CompressConfig, compress
    >>> r = compress(CompressConfig(run="runs/fmnist", out="runs/fmnist-int8"))  # doctest: +SKIP
    >>> r.chosen, r.candidates_path                                               # doctest: +SKIP
    ('dynamic-int8', PosixPath('runs/fmnist-int8/compress/candidates.json'))
    """
    environ = os.environ if environ is None else environ
    workspace = workspace or Path.cwd()
    progress = progress or SilentProgress()
    chains = validate(config)
    from shoestring.compress.ledger_row import CompressRow

    started = clock()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    tmp = config.out.parent / f".{config.out.name}.compress-{os.getpid()}.tmp"
    try:
        progress.status(f"loading run '{config.run}' and its data")
        workload = load_workload(config.run, config.metric, workspace)
        if config.encrypt or is_encrypted_path(config.run):  # never a plaintext copy of a secret
            encrypt_output(tmp)  # before any candidate is written under tmp
        with CompressRow(ledger, config, workload, environ, workspace, clock) as row:
            session = Session(config, workload, tmp / "work", progress)
            result = _run(config, session, chains, tmp, row.id, clock)
            row.finish(result, clock() - started)
            return result
    finally:
        torch.set_num_threads(previous_threads)
        shutil.rmtree(tmp, ignore_errors=True)


def _run(config: CompressConfig, s: Session, chains, tmp: Path, run_id: str | None,
         clock) -> CompressResult:
    from shoestring.compress.methods import Candidate, build

    w = s.workload
    parent = Candidate("float32", w.parent.model, w.card)
    built = [parent]
    done: dict[tuple, list] = {(): [parent]}  # chain prefix → its candidates, built once
    for chain in chains:
        for i in range(1, len(chain) + 1):
            if chain[:i] not in done:
                done[chain[:i]] = [out for c in done[chain[:i - 1]]
                                   for out in build(chain[i - 1], c, s)]
        for c in done[chain]:
            c.name = "+".join(c.methods)
            if c not in built:
                built.append(c)
    # Each candidate as the run folder it would be; its size on disk is its weights file.
    folders = {}
    for c in built[1:]:
        folders[c.name] = save_run(tmp / "candidates" / c.name, c.module, c.card,
                                   tokenizer=s.tokenizer)
    rows = []
    progress = s.reporter
    progress.start(len(built), "measuring candidates")
    for c in built:
        progress.status(f"{c.name}: scoring on the held-out split")
        size = (w.parent.folder if c is parent else folders[c.name]).weights.stat().st_size
        row = {"name": c.name, "methods": c.methods, "is_parent": c is parent,
               "size_bytes": size, "params": c.params or count_params(c.module), "metric": w.evaluate(c.module), "kept_float": c.kept_float,
               "sensitivity": c.sensitivity, "transforms": [t.model_dump() for t in
                                                            c.card.transforms],
               "notes": c.notes, "trained": c.trained, "tokens_per_second": None}
        if w.family == "gpt":
            prompt = w.example_inputs(1)[:, :8]
            row["tokens_per_second"] = generation_tokens_per_second(c.module, prompt,
                                                                    GENERATION_TOKENS, clock)
        rows.append(row)
        progress.advance(c.name)
    progress.stop()
    latency: dict[str, dict[str, Any]] = {c.name: {} for c in built}
    for b in config.batch_sizes:
        progress.status(f"timing every candidate at batch {b}")
        x = w.example_inputs(b)
        calls = {c.name: forward_call(c.module, x) for c in built}
        for name, lat in time_interleaved(calls, config.measure_seconds, b, clock).items():
            latency[name][str(b)] = lat.to_json()
    for row in rows:
        row["latency"] = latency[row["name"]]
    hib, unit = METRICS[w.metric]
    chosen = rank(rows, max_drop=config.max_drop, higher_is_better=hib,
                  batch_sizes=list(config.batch_sizes))
    table = document(rows, chosen=chosen, parent_dir=str(config.run.resolve()),
                     parent_id=w.run_id, metric=w.metric, higher_is_better=hib, drop_unit=unit,
                     max_drop=config.max_drop, target=config.target, threads=config.threads,
                     batch_sizes=list(config.batch_sizes))
    _write(config, s, tmp, table, built, chosen, folders, run_id)
    return CompressResult(config.out, chosen, table, run_id)


def _write(config, s: Session, tmp: Path, table, built, chosen, folders, run_id) -> None:
    """Fill ``tmp`` with the new run folder, then rename it to ``config.out``."""
    import shutil as sh

    w = s.workload
    out = RunFolder(tmp)
    out.create()
    if chosen is not None:
        c = next(c for c in built if c.name == chosen)
        lineage = Lineage(stage="compress", parent_run=w.run_id,
                          parent_dir=str(config.run.resolve()))
        save_run(tmp, c.module, c.card.model_copy(update={"lineage": lineage}),
                 tokenizer=s.tokenizer)
        if w.parent.folder.config.exists():  # eval and plan read the data and model from it
            atomic_write_bytes(out.config, read_bytes(w.parent.folder.config))
        row = next(r for r in table["candidates"] if r["chosen"])
        summary = {"status": "finished", "stage": "compress", "chosen": chosen,
                   w.metric: row["metric"], "metric_drop": row["metric_drop"],
                   "size_bytes": row["size_bytes"], "size_ratio": row["size_ratio"],
                   "speedup": row["speedup"], "parent_run": w.run_id}
        out.write_json(out.summary, summary)
        out.write_json(out.run_info, {"id": run_id, "name": config.out.name})
    sh.rmtree(tmp / "candidates", ignore_errors=True)
    sh.rmtree(tmp / "work", ignore_errors=True)
    (tmp / COMPRESS_DIR).mkdir(exist_ok=True)
    out.write_json(tmp / COMPRESS_DIR / CANDIDATES, table)
    out.write_json(tmp / COMPRESS_DIR / CONFIG_JSON, config.model_dump(mode="json"))
    if config.out.exists():  # an empty folder the user made: replace it
        config.out.rmdir()
    os.replace(tmp, config.out)
    fsync_dir(config.out.parent)
