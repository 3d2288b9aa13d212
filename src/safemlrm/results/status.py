"""`safemlrm status`: a run's progress per stage, whether a process is working on it now, and the
judges' totals (verdicts stored of the channels there are to judge)."""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..judges.health import judge_health
from ..store import Store


@dataclass(frozen=True)
class RunStatus:
    state: str  # "in progress (pid N)", "stopped", or "finished"
    rows: list[list[Any]]  # stage, what, done, of, errors, unparseable (judges' unreadable verdicts)
    note: str
    warnings: list[str] = field(default_factory=list)  # judges whose verdicts are mostly unreadable


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the process holding the run's lock, or None when no process holds it."""
    path = run_dir / ".lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # refused while a run holds it exclusively
        except BlockingIOError:
            text = path.read_text().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def run_status(run_dir: str | Path) -> RunStatus:
    run_dir = Path(run_dir)
    with Store(run_dir, readonly=True) as store:
        c = store.counts()
        # what a judge has to read: every non-empty channel of every answered completion
        to_judge = store.channels_to_judge()
        judges = list(store.get_meta("judges") or {})
        health = {h.judge: h for h in judge_health(store)}
    rows: list[list[Any]] = [["probes", "built", c["probes"], c["probes"], 0, ""]]
    for model, m in c["models"].items():
        rows.append(["generate", model, m["completed"], m["planned"], m["errors"], ""])
    for judge in dict.fromkeys([*judges, *c["verdicts"]]):
        h = health.get(judge)
        # errors: calls that failed; unparseable: verdicts the judge gave that could not be read
        rows.append(["judge", judge, c["verdicts"].get(judge, 0), to_judge, h.failed if h else 0,
                     h.unparseable if h else 0])
    pid = lock_holder(run_dir)
    complete = all(r[2] >= r[3] for r in rows)
    if pid is not None:
        state = f"in progress (pid {pid})" if pid > 0 else "in progress"
        note = "a safemlrm process is working on this run now"
    elif complete:
        state, note = "finished", "every planned item is generated and judged"
    else:
        state, note = "stopped", "no process is working on it; run the same command to resume"
    return RunStatus(state=state, rows=rows, note=note, warnings=[h.warning() for h in health.values() if h.mostly_unreadable])
