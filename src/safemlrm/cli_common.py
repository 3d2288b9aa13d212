"""What every `safemlrm` command shares: its consoles, its error guard and its small helpers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from .cli_errors import guarded
from .errors import SafeMLRMError

out = Console(markup=False)  # paths, names and messages printed here are data: never read as Rich markup
err = Console(stderr=True)

# User mistakes, unwritable paths and interrupts print one clear message, without a traceback
# (safemlrm.cli_errors: exit 2, or 130/143 for SIGINT/SIGTERM).
user_errors = guarded

FORMAT = typer.Option("table", "--format", help="table, json or csv.")


def quiet(no_progress: bool) -> None:
    """--no-progress: no bars of ours, nor the loading bars of transformers and huggingface_hub."""
    if no_progress:
        from .progress import quiet_libraries

        quiet_libraries()


def parse_params(pairs: list[str], option: str = "--param") -> dict:
    import yaml

    params = {}
    for pair in pairs:
        if "=" not in pair:
            raise SafeMLRMError(f"{option} takes KEY=VALUE, got {pair!r}")
        k, v = pair.split("=", 1)
        params[k] = yaml.safe_load(v)
    return params


def output_dir(out_dir: Path | None, cfg: Any) -> Path:
    """Where a command writes: --out, else the config's `output`, else runs/<name>."""
    return out_dir or Path(cfg.output or f"runs/{cfg.name}")
