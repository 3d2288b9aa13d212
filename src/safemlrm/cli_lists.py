"""`safemlrm list ...` (what is registered, with each plugin's options) and `safemlrm render ...`
(attack images to files)."""
from __future__ import annotations

from pathlib import Path

from typing import Optional

import typer

from . import registry
from .cli_common import FORMAT, out, user_errors
from .cli_output import check_format, emit, emit_sections
from .errors import SafeMLRMError

list_app = typer.Typer(no_args_is_help=True, help="List registered models, datasets, attacks, judges.")
render_app = typer.Typer(no_args_is_help=True, help="Render attack images to files.")


def _list(kind: str, fmt: str) -> None:
    from .options import describe

    check_format(fmt)
    registry.load_plugins()
    rows = []
    for name, obj in registry.items(kind):
        # the plugin's Options declaration: the one its config is checked against
        opts = ", ".join(f"{n} ({d})" if d not in ("", "None") else n for n, _, d, _ in describe(obj))
        rows.append([name, registry.about(obj), opts])
    emit(out, fmt, f"{kind}s", ["name", "about", "options (default)"], rows)


@list_app.command("models")
@user_errors
def list_models(cards: Optional[Path] = typer.Option(None, "--cards", help="Extra model-card YAML file."),
                fmt: str = FORMAT):
    """Known model cards, with their base -> reasoning pairs."""
    from .models.cards import CardCatalog

    check_format(fmt)
    cat = CardCatalog.builtin()
    if cards:
        cat.extend_from(cards)
    emit_sections(out, fmt, [
        ("models", "models", ["name", "hub id", "base model", "prompt", "format", "modalities", "thinking"],
         [[c.name, c.hub_id + ("" if c.verified else " (unverified)"), c.base or "-", c.prompt_style,
           c.format_name, ",".join(m.value for m in c.modalities), "on|off" if c.thinking_switch else "-"]
          for c in cat]),
        ("pairs", "base -> reasoning pairs", ["base", "reasoning model"],
         [[base.name, reasoning.name] for base, reasoning in cat.pairs()])])


@list_app.command("datasets")
@user_errors
def list_datasets(fmt: str = FORMAT):
    """Registered datasets."""
    _list("dataset", fmt)


@list_app.command("attacks")
@user_errors
def list_attacks(fmt: str = FORMAT):
    """Registered attacks."""
    _list("attack", fmt)


@list_app.command("judges")
@user_errors
def list_judges(fmt: str = FORMAT):
    """Registered judges."""
    _list("judge", fmt)


@list_app.command("backends")
@user_errors
def list_backends(fmt: str = FORMAT):
    """Registered model backends."""
    _list("backend", fmt)


@render_app.command("figstep")
@user_errors
def render_figstep(csv: Optional[Path] = typer.Option(None, "--csv", help="SafeBench CSV (default: the bundled full set)."),
                   out_dir: Path = typer.Option(..., "--out", help="Output folder.")):
    """Write query_ForbidQI_{category_id}_{task_id}_6.png for every row."""
    from .datasets.figstep import SafeBench
    from .attacks.typography import render_figstep as render

    ds = SafeBench(path=csv, subset="full")
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for s in ds.samples():
        cat, task = s.id.split("_", 1)
        render(s.fields["instruction"]).save(out_dir / f"query_ForbidQI_{cat}_{task}_6.png")
        n += 1
    out.print(f"wrote {n} images to {out_dir}")


@render_app.command("mm-typo")
@user_errors
def render_mm_typo(key_phrase: Optional[str] = typer.Option(None, "--key-phrase", help="The text to draw."),
                   dataset: Optional[Path] = typer.Option(None, "--dataset", help="An MM-SafetyBench download: render every item's Key Phrase."),
                   out_path: Path = typer.Option(..., "--out", help="Output PNG (with --key-phrase) or folder (with --dataset)."),
                   scenario: list[str] = typer.Option([], "--scenario", help="Only these scenarios (repeatable).")):
    """MM-SafetyBench typography (TYPO) images: one key phrase, or a whole dataset laid out as
    OUT/<scenario>/TYPO/<key>.png."""
    from .attacks.typography import render_mm_typo as render
    from .datasets.base import select
    from .datasets.mm_safetybench import MMSafetyBench

    if (key_phrase is None) == (dataset is None):
        raise SafeMLRMError("give exactly one of --key-phrase TEXT or --dataset PATH")
    if key_phrase is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        render(key_phrase).save(out_path)
        out.print(f"wrote {out_path}")
        return
    ds = MMSafetyBench(path=dataset, image_types=[])
    n = 0
    for s in select(ds, scenario or None):
        target = out_path / s.scenario / "TYPO" / f"{s.meta['key']}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        render(s.fields["Key Phrase"]).save(target)
        n += 1
    out.print(f"wrote {n} images under {out_path}")


# --- tis: Think in Safety (docs/think-in-safety.md) -------------------------------------------
