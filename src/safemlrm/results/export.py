"""Export a run: one row per (probe, channel, judge) with the texts a reader needs."""
from __future__ import annotations

import csv
import json
from contextlib import suppress
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..pipeline.batching import chunks
from ..errors import SafeMLRMError
from ..fsutil import write_errors
from ..records import ACCOUNT_FIELDS
from ..safety import csv_cell, export_text, jsonl_escape
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
    probe_key = ckey = sent_for = None
    probe = response = completion = sent = None
    cards = _cards(store)
    for row in store.rows():  # rows of one plan item come together
        if row["probe_key"] != probe_key:
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
    for (model,) in store.db.execute("SELECT DISTINCT model FROM plan"):
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
    if fmt not in FORMATS:
        raise SafeMLRMError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    run_dir = Path(run_dir)
    path = Path(output) if output else run_dir / f"export.{fmt}"
    write = _WRITERS[fmt]
    tmp = path.with_name(f".{path.name}.partial")
    with Store(run_dir, readonly=True) as store:
        try:
            with write_errors(path):  # named by the user's path, not the hidden temporary
                write(export_rows(store), tmp)
                tmp.replace(path)  # a failed export leaves no half file under the real name
        finally:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
    return path


def _jsonl(rows: Iterable[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for rec in rows:
            # exact: lone surrogates and line separators as \uXXXX escapes, one record per line
            f.write(jsonl_escape(json.dumps(rec, ensure_ascii=False)) + "\n")


def _csv(rows: Iterable[dict[str, Any]], path: Path) -> None:
    # for spreadsheets: cells that would run as formulas start with ', surrogates written visibly;
    # every text quoted: a bare CR inside model output would otherwise end the row for a reader
    with path.open("w", encoding="utf-8", errors="backslashreplace", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
        w.writerow(COLUMNS)
        for rec in rows:
            w.writerow(["" if rec[c] is None else csv_cell(rec[c]) for c in COLUMNS])


def _parquet(rows: Iterable[dict[str, Any]], path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SafeMLRMError("parquet export needs pyarrow: pip install 'safemlrm[parquet]'") from None
    types = {"score": pa.float64(), "by_prefilter": pa.bool_(), "prompt_tokens": pa.int64(),
             "completion_tokens": pa.int64(), "reasoning_tokens": pa.int64(),
             "answer_tokens": pa.int64(), "budget": pa.int64(), "close_seen": pa.bool_()}
    schema = pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in chunks(rows, CHUNK):
            cols = {c: [export_text(r[c]) for r in chunk] for c in COLUMNS}
            for c in ("by_prefilter", "close_seen"):
                cols[c] = [None if v is None else bool(v) for v in cols[c]]
            writer.write_table(pa.table(cols, schema=schema))


_WRITERS = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}
