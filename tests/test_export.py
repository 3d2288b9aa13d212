"""`safemlrm export` streams a run to JSONL, CSV and Parquet: the same rows in each format, the same
rows as `load_run`, written in row groups (nothing holds the whole run)."""
from __future__ import annotations

import csv
import json
import math

import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_summary import run_dir  # noqa: F401 - the fixture: a hand-built store with failures and pending items

from safemlrm import load_run
from safemlrm.results import export
from safemlrm.results.export import COLUMNS, export_run


def test_every_format_holds_the_rows_of_load_run(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 7)  # several row groups from a small run
    items = load_run(run_dir).items
    paths = {fmt: export_run(run_dir, fmt, tmp_path / f"e.{fmt}") for fmt in ("jsonl", "csv", "parquet")}
    assert not list(tmp_path.glob(".*partial"))

    lines = [json.loads(line) for line in paths["jsonl"].read_text(encoding="utf-8").splitlines()]
    # verdicts: base 9 x 2 rubric + 7 keyword = 25, think 9 x 2 + 8 answers + 7 = 33; 3 failed and 2
    # pending items once each
    assert len(lines) == len(items) == 63
    assert list(lines[0]) == COLUMNS
    keys = ["model", "probe_key", "channel", "judge", "score", "label"]
    want = [tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row)
            for row in items[keys].itertuples(index=False)]
    assert [tuple(r[k] for k in keys) for r in lines] == want
    # the channel's own text travels with its verdict; failed and pending items have none
    by_channel = {(r["model"], r["sample_id"], r["channel"]): r["text"] for r in lines}
    assert by_channel[("think", "a", "reasoning")] == "r" and by_channel[("think", "a", "answer")] == "a"
    assert by_channel[("think", "x1", None)] is None
    failed = next(r for r in lines if r["sample_id"] == "x1")
    assert failed["outcome"] == "error" and failed["error"].startswith("HTTP 503") and failed["judge_query"] == "q x1"

    meta = pq.ParquetFile(paths["parquet"])
    assert meta.metadata.num_row_groups == math.ceil(63 / 7)
    table = pd.read_parquet(paths["parquet"])
    assert list(table.columns) == COLUMNS and len(table) == 63
    assert str(table["score"].dtype) == "float64" and table["by_prefilter"].dropna().isin([True, False]).all()
    assert table["by_prefilter"].sum() == 2  # item f's two base rubric verdicts came from the prefilter

    with paths["csv"].open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == COLUMNS and len(rows) == 64
    assert [r[COLUMNS.index("text")] for r in rows[1:]] == ["" if r["text"] is None else r["text"] for r in lines]


def test_a_failed_export_leaves_no_file(run_dir, tmp_path, monkeypatch):
    def boom(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setitem(export._WRITERS, "jsonl", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(run_dir, "jsonl", tmp_path / "e.jsonl")
    assert list(tmp_path.iterdir()) == []
