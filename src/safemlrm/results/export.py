"""Export a run: one row per (probe, channel, judge) with the texts a reader needs."""
from __future__ import annotations

import csv
import json
from contextlib import suppress
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ..pipeline.batching import chunks
from ..errors import SafeMLRMError
from ..fsutil import write_errors
from ..records import ACCOUNT_FIELDS, Completion, Probe, Response
from ..untrusted import csv_cell, export_text, jsonl_escape
from ..store import Store

FORMATS = ("jsonl", "csv", "parquet")


def map_cells(df: pd.DataFrame, fn) -> pd.DataFrame:
    """`fn` over every cell, columns kept as Python objects (DataFrame.map would re-infer Arrow
    strings, which refuse lone surrogates)."""
    return pd.DataFrame({c: pd.Series([fn(v) for v in df[c]], index=df.index, dtype=object) for c in df.columns},
                        index=df.index)


COLUMNS = ["model", "dataset", "sample_id", "scenario", "attack", "probe_key", "completion_key", "outcome",
           "error", "channel", "judge", "score", "label", "by_prefilter", "rationale", *ACCOUNT_FIELDS,
           "text", "judge_query",
           # what was sent: messages as JSON, images by sha256 (RUN/blobs/); finish_reason is an account field
           "attack_params", "messages", "prompt_tokens", "completion_tokens"]
CHUNK = 2_000  # rows per Parquet row group: memory stays flat however large the run


def export_rows(store: Store) -> Iterator[dict[str, Any]]:
    """One dict per (planned item, channel, judge), in plan order, with the channel's text and the
    judge query; read as it is written, so nothing holds the whole run."""
    probe_key = ckey = None
    sent_for: tuple[Any, Any] | None = None
    probe: Probe | None = None
    response: Response | None = None
    completion: Completion | None = None
    sent = ""
    cards = _cards(store)
    for row in store.rows():  # rows of one plan item come together
        if probe is None or row["probe_key"] != probe_key:
            probe_key, probe, sent_for = row["probe_key"], store.probe(row["probe_key"]), None
        if row["completion_key"] != ckey:
            ckey, response = row["completion_key"], store.response(row["completion_key"])
            completion = store.completion(ckey)
        if sent_for != (probe_key, row["model"]):
            sent_for, sent = (probe_key, row["model"]), _sent(probe, cards.get(row["model"]))
        channel = row["channel"]
        row["text"] = response.channel(channel) if response is not None and channel is not None else None
        row["judge_query"] = probe.judge_query
        row["attack_params"] = json.dumps(probe.attack_params, ensure_ascii=False, sort_keys=True)
        row["messages"] = sent
        for field in ("finish_reason", "prompt_tokens", "completion_tokens"):
            row[field] = getattr(completion, field) if completion is not None else None
        yield row


def _cards(store: Store) -> dict[str, Any]:
    """Each model's card as stored at run time: the prompt convention that shaped what it was sent."""
    from ..models.cards import ModelCard

    cards = {}
    for model in store.planned_models():
        meta = store.get_meta(f"model:{model}")
        if meta and "card" in meta:
            cards[model] = ModelCard.model_validate(meta["card"])
    return cards


def _sent(probe, card) -> str:
    """The messages as the model received them (the card's prompt convention applied), as JSON."""
    from ..models.base import apply_prompt_convention

    messages = apply_prompt_convention(card, probe.messages) if card is not None else probe.messages
    return json.dumps([m.model_dump(mode="json") for m in messages], ensure_ascii=False)


def export_run(run_dir: str | Path, fmt: str, output: str | Path | None = None) -> Path:
    """`safemlrm export`: the run's items in one format, at `output` (default RUN_DIR/export.FMT)."""
    run_dir = Path(run_dir)
    with Store(run_dir, readonly=True) as store:
        return export_store(store, {fmt: Path(output) if output else run_dir / f"export.{fmt}"})[0]


def export_store(store: Store, outputs: dict[str, Path]) -> list[Path]:
    """The items in every format asked for (format -> path), from one read of the store. Each file is
    written beside its path under a hidden name and moved into place at the end: a failed export
    leaves no half file under the real name."""
    for fmt in outputs:
        if fmt not in FORMATS:
            raise SafeMLRMError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    tmps = {fmt: path.with_name(f".{path.name}.partial") for fmt, path in outputs.items()}
    sinks: list[_Sink] = []
    try:
        for fmt, tmp in tmps.items():
            with write_errors(outputs[fmt]):  # named by the user's path, not the hidden temporary
                sinks.append(_WRITERS[fmt](tmp))
        for chunk in chunks(export_rows(store), CHUNK):
            for fmt, sink in zip(outputs, sinks):
                with write_errors(outputs[fmt]):
                    sink.write(chunk)
        while sinks:
            sinks.pop(0).close()
        for fmt, tmp in tmps.items():
            tmp.replace(outputs[fmt])
    finally:
        for sink in sinks:
            with suppress(Exception):
                sink.close()
        for tmp in tmps.values():
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
    return list(outputs.values())


class _Sink(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...
    def close(self) -> None: ...


class _Jsonl:
    def __init__(self, path: Path):
        self.f = path.open("w", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        for rec in rows:
            # exact: lone surrogates and line separators as \uXXXX escapes, one record per line
            self.f.write(jsonl_escape(json.dumps(rec, ensure_ascii=False)) + "\n")

    def close(self) -> None:
        self.f.close()


class _Csv:
    # for spreadsheets: cells that would run as formulas start with ', surrogates written visibly;
    # every text quoted: a bare CR inside model output would otherwise end the row for a reader
    def __init__(self, path: Path):
        self.f = path.open("w", encoding="utf-8", errors="backslashreplace", newline="")
        self.w = csv.writer(self.f, quoting=csv.QUOTE_NONNUMERIC)
        self.w.writerow(COLUMNS)

    def write(self, rows: list[dict[str, Any]]) -> None:
        for rec in rows:
            self.w.writerow(["" if rec[c] is None else csv_cell(rec[c]) for c in COLUMNS])

    def close(self) -> None:
        self.f.close()


class _Parquet:
    """One row group per chunk: memory stays flat however large the run."""

    def __init__(self, path: Path):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise SafeMLRMError("parquet export needs pyarrow: pip install 'safemlrm[parquet]'") from None
        types = {"score": pa.float64(), "by_prefilter": pa.bool_(), "prompt_tokens": pa.int64(),
                 "completion_tokens": pa.int64(), "reasoning_tokens": pa.int64(),
                 "answer_tokens": pa.int64(), "budget": pa.int64(), "close_seen": pa.bool_()}
        self.pa = pa
        self.schema = pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        cols = {c: [export_text(r[c]) for r in rows] for c in COLUMNS}
        for c in ("by_prefilter", "close_seen"):
            cols[c] = [None if v is None else bool(v) for v in cols[c]]
        self.writer.write_table(self.pa.table(cols, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


_WRITERS: dict[str, Callable[[Path], _Sink]] = {"jsonl": _Jsonl, "csv": _Csv, "parquet": _Parquet}
