"""The command line's one error path: every failure a user can act on is one line and an exit code.

* `SafeMLRMError` (config, data, names, a locked run): `error: MESSAGE`, exit 2.
* Any `OSError` or SQLite write failure not already named: `error: cannot write PATH: REASON` with the
  path the user gave (a full disk adds that nothing stored is lost), exit 2.
* Ctrl-C (SIGINT) and SIGTERM: the work in flight stops, what is stored stays, and the command says
  `interrupted: N of M stored; run the same command to resume`; exit 130 (SIGINT) or 143 (SIGTERM).

No traceback in any of these: each names what to do next.
"""
from __future__ import annotations

import functools
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from .errors import SafeMLRMError
from .fsutil import write_error

err = Console(stderr=True)
EXIT_USER = 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

_state: dict[str, Any] = {"terminated": False, "watch": None}


def print_error(message: str) -> None:
    from .untrusted import printable  # a message may quote data: shown, never obeyed as markup

    err.print(f"[bold red]error:[/] {printable(message)}", markup=True, highlight=False, soft_wrap=True)


def as_user_error(exc: BaseException) -> SafeMLRMError | None:
    """The user-facing error for `exc`, or None when it is a bug (then the traceback is the report)."""
    if isinstance(exc, SafeMLRMError):
        return exc
    if isinstance(exc, OSError):
        return write_error(exc.filename if exc.filename is not None else "a file", exc)
    if isinstance(exc, sqlite3.OperationalError):
        watched = _state["watch"]
        return write_error(Path(watched[0]) / "store.sqlite" if watched else "the run store", exc)
    return None


def watch(run_dir: str | Path, what: str = "completions") -> None:
    """Name the run an interrupt should report on: `what` is completions (run) or verdicts (judge)."""
    _state["watch"] = (Path(run_dir), what)


def interrupted_message() -> str:
    watched = _state["watch"]
    if watched is None or not (watched[0] / "store.sqlite").exists():
        return "interrupted; nothing was stored"
    from .store import Store

    run_dir, what = watched
    with Store(run_dir, readonly=True) as store:
        c = store.counts()
    if what == "verdicts":
        done = sum(c["verdicts"].values())
        return f"interrupted: {done} verdicts stored; run the same command to resume"
    done = sum(m["completed"] for m in c["models"].values())
    planned = sum(m["planned"] for m in c["models"].values())
    return f"interrupted: {done} of {planned} stored; run the same command to resume"


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command: user errors and interrupts end as described in the module doc."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            err.print(interrupted_message(), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_SIGTERM if _state["terminated"] else EXIT_SIGINT) from None
        except (SafeMLRMError, OSError, sqlite3.OperationalError) as e:
            user = as_user_error(e)
            print_error(str(user))
            raise typer.Exit(EXIT_USER) from None
    return wrapper


def _on_sigterm(signum: int, frame: Any) -> None:
    # SIGTERM takes SIGINT's path: asyncio cancels its tasks, transactions roll back, the store closes
    _state["terminated"] = True
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a background job ignores SIGINT: stop all the same
        raise KeyboardInterrupt
    signal.raise_signal(signal.SIGINT)


def install_signals() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a background job: leave it ignored
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_main(app: Callable[..., Any], args: list[str]) -> None:
    """The process's entry: file modes, signals, then the command; what escapes a command is caught here."""
    from .fsutil import owner_only

    install_signals()
    try:
        owner_only()
        app(args=args, prog_name="safemlrm", standalone_mode=True)
    except KeyboardInterrupt:
        err.print(interrupted_message(), markup=False, highlight=False)
        sys.exit(EXIT_SIGTERM if _state["terminated"] else EXIT_SIGINT)
    except (SafeMLRMError, OSError, sqlite3.OperationalError) as e:
        print_error(str(as_user_error(e)))
        sys.exit(EXIT_USER)
