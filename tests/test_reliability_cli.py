"""The command line as a person meets it, each case through the real CLI in a subprocess: paths
that cannot be written (a file as parent, a read-only folder, a full disk), Ctrl-C and SIGTERM,
config mistakes named by file and key, piped tables at 80 columns, scripts' formats, file modes,
the export's columns, a resume that loads nothing, attacks in configured order.

Each case asserts the exact message and exit code, and that the store stays intact and resumable.
The messages are recorded and checked against the table in docs/reliability.md ("Files, disks,
interrupts"); `SAFEMLRM_WRITE_DOCS=1 pytest tests/test_reliability_cli.py` rewrites that table.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from reliability_util import SAFEMLRM, cli, echo_config, save
from servers import Fault, FaultServer

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
BEGIN, END = "<!-- cli-cases:begin (written by tests/test_reliability_cli.py) -->", "<!-- cli-cases:end -->"
CASES: dict[str, tuple[str, str]] = {}  # case -> (command, message), in test order


def record(case: str, command: str, proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one-line message of a failed command, checked for exit code and no traceback, and recorded."""
    everything = proc.stdout + proc.stderr
    assert "Traceback" not in everything, everything
    assert proc.returncode == code, everything
    message = " ".join(proc.stderr.split())
    CASES[case] = (command, message)
    return message


def integrity(run_dir: Path) -> tuple[int, int]:
    """(completions stored, planned items) of a store that must pass SQLite's integrity check."""
    with sqlite3.connect(run_dir / "store.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        done = db.execute("SELECT COUNT(*) FROM completions WHERE error IS NULL").fetchone()[0]
        return done, db.execute("SELECT COUNT(*) FROM plan").fetchone()[0]


def mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}): needs root")


@pytest.fixture
def mounts():
    made: list[Path] = []
    yield made
    for m in reversed(made):
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


@pytest.fixture(scope="module")
def server():
    with FaultServer() as srv:
        yield srv


def config(folder: Path, server: FaultServer, n: int = 3, **kw) -> dict:
    return echo_config(folder, server.base_url, [f"question {i} " + "x" * kw.pop("pad", 0) for i in range(n)], **kw)


def finished_run(folder: Path, server: FaultServer, **kw) -> Path:
    save(config(folder, server, **kw), folder / "run.yaml")
    r = cli("run", "run.yaml", "--out", "done", "--no-progress", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder / "done"


# --- paths that cannot be written ------------------------------------------------------------------


def test_a_file_as_parent(tmp_path, server):
    done = finished_run(tmp_path, server)
    (tmp_path / "afile").write_text("not a folder")
    r = cli("run", "run.yaml", "--out", "afile/run", "--no-progress", cwd=tmp_path)
    assert record("run: output folder under a file", "safemlrm run run.yaml --out afile/run", r) == \
        "error: cannot write afile/run: Not a directory"
    r = cli("export", "done", "-o", "afile/e.jsonl", cwd=tmp_path)
    assert record("export: file under a file", "safemlrm export done -o afile/e.jsonl", r) == \
        "error: cannot write afile/e.jsonl: Not a directory"
    r = cli("report", "done", "--out", "afile/report", cwd=tmp_path)
    assert record("report: folder under a file", "safemlrm report done --out afile/report", r) == \
        "error: cannot write afile/report: Not a directory"
    r = cli("analyze", "done", "--format", "csv", "-o", "afile/an", cwd=tmp_path)
    assert record("analyze: folder under a file", "safemlrm analyze done --format csv -o afile/an", r) == \
        "error: cannot write afile/an: Not a directory"
    assert integrity(done) == (3, 3)


def test_a_read_only_folder(tmp_path, server, mounts):
    done = finished_run(tmp_path, server)
    mount_tmpfs(tmp_path / "ro", "ro,size=1m")
    mounts.append(tmp_path / "ro")
    r = cli("run", "run.yaml", "--out", "ro/run", "--no-progress", cwd=tmp_path)
    assert record("run: read-only folder", "safemlrm run run.yaml --out ro/run", r) == \
        "error: cannot write ro/run: Read-only file system"
    r = cli("export", "done", "-o", "ro/e.jsonl", cwd=tmp_path)
    assert record("export: read-only folder", "safemlrm export done -o ro/e.jsonl", r) == \
        "error: cannot write ro/e.jsonl: Read-only file system"
    assert integrity(done) == (3, 3)


def test_a_full_disk_loses_nothing_and_resumes(tmp_path, server, mounts):
    small = tmp_path / "small"
    mount_tmpfs(small, "size=256k")
    mounts.append(small)
    save(config(tmp_path, server, n=120, pad=4000, options={"concurrency": 4}), tmp_path / "run.yaml")
    r = cli("run", "run.yaml", "--out", "small/run", "--no-progress", cwd=tmp_path)
    message = record("run: disk full", "safemlrm run run.yaml --out small/run (a 256 KiB disk)", r)
    assert re.fullmatch(r"error: cannot write small/run/store\.sqlite: database or disk is full; nothing stored so "
                        r"far is lost; free space and run again", message), message
    before, planned = integrity(small / "run")
    subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
    r = cli("run", "run.yaml", "--out", "small/run", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    after, planned_after = integrity(small / "run")
    assert after == planned_after == 120 and before <= after

    # an export to a full disk names the user's file, not its hidden temporary, and leaves none
    tiny = tmp_path / "tiny"
    mount_tmpfs(tiny, "size=64k")
    mounts.append(tiny)
    r = cli("export", "small/run", "-o", "tiny/e.jsonl", cwd=tmp_path)
    assert record("export: disk full", "safemlrm export RUN -o tiny/e.jsonl (a 64 KiB disk)", r) == \
        "error: cannot write tiny/e.jsonl: No space left on device; nothing stored so far is lost; free space " \
        "and run again"
    assert list(tiny.iterdir()) == []


# --- interrupts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_says_what_is_stored(tmp_path, sig, code):
    # three answers, then every request is held until the signal has landed: the run cannot finish
    # first, however slow the machine (timed variants of this test raced on a loaded one)
    with FaultServer(Fault("ok", seconds=120)) as slow:
        slow.script(*[Fault("ok", seconds=0.05)] * 3)
        save(config(tmp_path, slow, n=30, options={"concurrency": 1}), tmp_path / "run.yaml")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
        # SIGINT as a terminal leaves it (default) for Ctrl-C; ignored, as in a background job, for SIGTERM,
        # which must stop the run all the same (an ignored SIGINT was inherited from the test process)
        sigint = signal.SIG_DFL if sig == signal.SIGINT else signal.SIG_IGN
        proc = subprocess.Popen([*SAFEMLRM, "run", "run.yaml", "--out", "r", "--no-progress"], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (tmp_path / "r" / "store.sqlite").exists() and slow.requests >= 4:  # 3 answered, 1 held
                break
            time.sleep(0.1)
        status = cli("status", "r", cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        proc.send_signal(sig)
        out, errs = proc.communicate(timeout=60)
        done, planned = integrity(tmp_path / "r")
        r = subprocess.CompletedProcess(proc.args, proc.returncode, out, errs)
        name = "SIGINT (Ctrl-C)" if sig == signal.SIGINT else "SIGTERM"
        message = record(f"run: {name}", "safemlrm run run.yaml", r, code=code)
        assert message == f"interrupted: {done} of {planned} stored; run the same command to resume"
        assert 0 < done < planned == 30
        slow.default = Fault("ok", seconds=0.02)  # the resume need not wait
        CASES[f"run: {name}"] = ("safemlrm run run.yaml", "interrupted: N of M stored; run the same command to resume")
        assert f"(in progress (pid {proc.pid}))" in status.stdout  # while it ran, status said so
        again = cli("run", "run.yaml", "--out", "r", "--no-progress", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert integrity(tmp_path / "r") == (30, 30)
        st = cli("status", "r", cwd=tmp_path)
        assert "(finished)" in st.stdout


# --- config mistakes: file, key path, close matches ------------------------------------------------------


def test_config_mistakes_name_file_and_key(tmp_path, server):
    base = config(tmp_path, server)

    def run_with(case, mutate, expected, text=None):
        cfg = json.loads(json.dumps(base))
        mutate(cfg)
        (tmp_path / "run.yaml").write_text(text if text is not None else yaml.safe_dump(cfg))
        r = cli("run", "run.yaml", "--no-progress", "--out", "x", cwd=tmp_path)
        assert record(case, "safemlrm run run.yaml", r) == expected

    run_with("duplicate key", lambda c: None,
             "error: run.yaml: line 3: key 'limit' appears twice (first on line 2); keep one",
             text="datasets:\n- {name: figstep, limit: 2,\n   limit: 3}\nmodels: []\n")
    run_with("dataset option value", lambda c: c.update(datasets=[{"name": "figstep", "options": {"subset": "tinny"}}]),
             "error: run.yaml: key 'datasets.0.options': dataset 'figstep': subset must be one of tiny, full, not "
             "'tinny'. Did you mean 'tiny'?")
    run_with("judge variant", lambda c: c.update(judges=[{"name": "keyword", "params": {"variant": "studdy"}}]),
             "error: run.yaml: invalid judge 'keyword' params key 'judges.0.params.variant': must be one of "
             "refusal, study, not 'studdy'. Did you mean 'study'?")
    run_with("backend option", lambda c: c["models"][0]["options"].update(retries=3),
             "error: run.yaml: invalid backend 'openai' options key 'models.0.options.retries': unknown key. "
             "Did you mean 'max_retries'? Keys here: base_url, model, api_key_env, timeout, max_retries, "
             "backoff_base, backoff_max, extra_body, concurrency, min_concurrency, max_concurrency, "
             "tokens_per_minute, prefix_continuation")
    run_with("dtype", lambda c: c["models"][0].update(backend="hf", options={"dtype": "float23"}),
             "error: run.yaml: invalid backend 'hf' options key 'models.0.options.dtype': must be one of auto, float32, "
             "bfloat16, float16, not 'float23'. Did you mean 'float32' or 'float16' or 'bfloat16'?")
    run_with("missing text field", lambda c: c.update(attacks=[{"name": "vanilla", "params": {"field": "intnt"}}]),
             "error: run.yaml: key 'attacks.0': attack 'vanilla' needs text field 'intnt', which item 'p00' of "
             "dataset 'items' lacks (it has: none).")


# --- output for people and for scripts --------------------------------------------------------------------


def test_piped_tables_at_80_columns_cut_no_name(tmp_path, server):
    from safemlrm.models.cards import CardCatalog

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    r = subprocess.run([*SAFEMLRM, "list", "models"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    for card in CardCatalog.builtin():
        assert re.search(rf"\b{re.escape(card.name)}\b", r.stdout), card.name
    done = finished_run(tmp_path, server)
    a = subprocess.run([*SAFEMLRM, "analyze", str(done)], capture_output=True, text=True, env=env)
    assert a.returncode == 0 and "…" not in a.stdout, a.stdout
    assert "left out to fit 80 columns" in a.stdout
    for kind in ("datasets", "attacks", "judges", "backends"):
        rows = json.loads(subprocess.run([*SAFEMLRM, "list", kind, "--format", "json"], capture_output=True,
                                         text=True, env=env).stdout)
        assert rows and all(row["about"] for row in rows), rows  # no empty "about" cell


def test_formats_for_scripts_and_version(tmp_path, server):
    finished_run(tmp_path, server)
    st = json.loads(cli("status", "done", "--format", "json", cwd=tmp_path).stdout)
    assert {"stage": "judge", "what": "keyword", "done": 6, "of": 6, "errors": 0, "unparseable": 0} in st  # answer and full of 3 items
    table = cli("status", "done", cwd=tmp_path).stdout
    assert "(finished)" in table
    rows = list(csv.reader(io.StringIO(cli("list", "judges", "--format", "csv").stdout)))
    assert rows[0] == ["name", "about", "options (default)"] and len(rows) > 3
    r = cli("analyze", "done", "--format", "csv", "-o", "an", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    files = list((tmp_path / "an").iterdir())
    assert files and all(f.stat().st_size > 0 and f.read_text().splitlines()[0] for f in files)
    v = cli("--version")
    assert v.returncode == 0 and re.fullmatch(r"safemlrm \d+\.\d+\.\d+\n", v.stdout)
    bad = cli("list", "models", "--format", "yaml")
    assert record("unknown --format", "safemlrm list models --format yaml", bad) == \
        "error: --format must be one of table, json, csv, not 'yaml'"


def test_serve_hint_prints_a_servable_path_and_keeps_the_port(tmp_path):
    cfg = {"name": "h", "datasets": [{"name": "figstep"}],
           "models": [{"card": "smollm2-135m-instruct", "backend": "openai",
                       "options": {"base_url": "http://127.0.0.1:8123/v1"}}]}
    (tmp_path / "h.yaml").write_text(yaml.safe_dump(cfg))
    r = cli("serve-hint", "h.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    command = next(line for line in r.stdout.splitlines() if line.startswith("vllm serve"))
    model = command.split()[2]
    assert not model.startswith("pkg://") and model.endswith(".gguf") and Path(model).is_file()
    assert "--port 8123" in command and "--seed" not in r.stdout and "generation" not in r.stdout


def test_everything_a_run_writes_is_owner_only(tmp_path, server):
    done = finished_run(tmp_path, server)
    for args in (["export", "done"], ["export", "done", "--format", "csv"], ["report", "done", "--out", "rep"]):
        assert cli(*args, cwd=tmp_path).returncode == 0
    paths = [p for p in [*done.rglob("*"), *(tmp_path / "rep").rglob("*")]]
    assert len(paths) > 8
    loose = [(str(p), oct(p.stat().st_mode & 0o777)) for p in paths if p.stat().st_mode & 0o077]
    assert loose == []
    shared = cli("export", "done", "-o", "shared.jsonl", cwd=tmp_path, env={"SAFEMLRM_UMASK": "022"})
    assert shared.returncode == 0 and (tmp_path / "shared.jsonl").stat().st_mode & 0o777 == 0o644


def test_export_rows_carry_what_was_sent(tmp_path, server):
    done = finished_run(tmp_path, server)
    assert cli("export", "done", cwd=tmp_path).returncode == 0
    rows = [json.loads(line) for line in (done / "export.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["sample_id"] == "p01" and r["channel"] == "full")
    assert json.loads(row["messages"]) == [{"role": "user", "content": [{"type": "text", "text": "question 1 "}]}]
    assert row["attack"] == "vanilla" and json.loads(row["attack_params"]) == {"field": None}
    assert row["finish_reason"] == "stop" and row["prompt_tokens"] > 0 and row["completion_tokens"] == 3  # "echo: question 1"
    assert row["outcome"] == "complete"  # the split's outcome


def test_report_orders_attacks_as_configured(tmp_path, server):
    save(config(tmp_path, server) | {"attacks": [{"name": "vanilla"}, {"name": "template"}]}, tmp_path / "run.yaml")
    assert cli("run", "run.yaml", "--out", "done", "--no-progress", cwd=tmp_path).returncode == 0
    summary = (tmp_path / "done" / "summary.md").read_text()
    assert summary.index("| vanilla |") < summary.index("| template |")
    metrics = (tmp_path / "done" / "metrics.csv").read_text()
    assert metrics.index('"vanilla"') < metrics.index('"template"')
    assert cli("report", "done", "--out", "rep", cwd=tmp_path).returncode == 0
    html = (tmp_path / "rep" / "tables" / "metrics.csv").read_text()
    assert html.index("vanilla") < html.index("template")


def test_a_resume_with_nothing_pending_loads_no_model(tmp_path, tiny_thinker):
    """The hf backend's identity needs the tokenizer (its chat template); a resume with nothing
    pending uses the identity stored at the first run, so it works with the checkpoint gone.
    --no-progress silences transformers' loading bars too."""
    model = tmp_path / "model"
    shutil.copytree(tiny_thinker, model)
    (tmp_path / "cards.yaml").write_text(yaml.safe_dump([{"name": "thinker", "hub_id": str(model),
                                                          "think_format": "think", "modalities": ["text"]}]))
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "intent": f"q {i}"}) + "\n"
                                                  for i in range(2)))
    save({"name": "hf", "cards": ["cards.yaml"],
          "models": [{"card": "thinker", "backend": "hf", "options": {"dtype": "float32"},
                      "generation": {"max_new_tokens": 4}}],
          "datasets": [{"name": "jsonl", "path": "items.jsonl", "options": {"name": "items"}}],
          "judges": [{"name": "keyword"}]}, tmp_path / "run.yaml")
    first = cli("run", "run.yaml", "--out", "r", "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Loading weights" not in first.stderr and "it/s]" not in first.stderr, first.stderr
    shutil.rmtree(model)
    again = cli("run", "run.yaml", "--out", "r", "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "probes 2, model calls 0 (0 errors)" in again.stdout
    assert integrity(tmp_path / "r") == (2, 2)


# --- the doc's table is these messages ----------------------------------------------------------------------


TABLE_ORDER = ["run: output folder under a file", "export: file under a file", "report: folder under a file",
               "analyze: folder under a file", "run: read-only folder", "export: read-only folder", "run: disk full",
               "export: disk full", "run: SIGINT (Ctrl-C)", "run: SIGTERM", "duplicate key", "dataset option value",
               "judge variant", "backend option", "dtype", "missing text field", "unknown --format"]


def doc_table() -> str:
    lines = ["| case | command | message |", "| --- | --- | --- |"]
    lines += [f"| {case} | `{CASES[case][0]}` | {CASES[case][1].replace('|', '&#124;')} |" for case in TABLE_ORDER]
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def the_doc_lists_every_case_with_its_message():
    """After the module's last test (whatever order they ran in): docs/reliability.md's table must be
    the recorded messages. A partial run (-k) records only some cases and checks nothing."""
    yield
    if set(CASES) != set(TABLE_ORDER):
        return
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    if os.environ.get("SAFEMLRM_WRITE_DOCS"):
        DOC.write_text(f"{head}{BEGIN}\n{doc_table()}\n{END}{tail}", encoding="utf-8")
        return
    assert rest.split(END)[0].strip() == doc_table()
