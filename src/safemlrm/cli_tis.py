"""`safemlrm tis ...`: Think in Safety: build safety-thought tuning data, validate it, fine-tune, compare."""
from __future__ import annotations

from pathlib import Path

from typing import Optional

import typer
from rich.table import Table

from .cli_common import err, out, output_dir, parse_params, quiet, user_errors
from .errors import SafeMLRMError

tis_app = typer.Typer(no_args_is_help=True, help="Think in Safety: build safety-thought tuning data, fine-tune, compare.")


@tis_app.command("build")
@user_errors
def tis_build(config: Path = typer.Argument(..., help="Build config (YAML), e.g. configs/tis-build.yaml."),
              out_dir: Optional[Path] = typer.Option(None, "--out", help="Build directory (default: the config's `output`, else runs/<name>)."),
              no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars.")):
    """Build (or resume) a TiS set: caption, teacher thoughts, filters, export."""
    from .tis.build import Builder
    from .tis.config import load_build_config

    quiet(no_progress)
    cfg = load_build_config(config)
    build_dir = output_dir(out_dir, cfg)
    r = Builder(cfg, build_dir, console=err, show_progress=not no_progress).build().report
    removed = ", ".join(f"{k} {v}" for k, v in r["removed"].items())
    out.print(f"items {r['items']}, candidates {r['candidates']}; removed: {removed}", highlight=False)
    out.print(f"kept {r['kept']} (refuse {r['decisions']['refuse']}, help {r['decisions']['help']})", highlight=False)
    out.print(f"wrote {r['export']['json']}; report {build_dir / 'build_report.md'}", highlight=False)


@tis_app.command("validate")
@user_errors
def tis_validate(file: Path = typer.Argument(..., help="A JSON file in the TiS form (an export, or the published set)."),
                 image_root: Optional[Path] = typer.Option(None, "--image-root", help="Folder the image paths are relative to (default: the file's folder)."),
                 no_images: bool = typer.Option(False, "--no-images", help="Do not check that the images exist."),
                 as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
                 strict: bool = typer.Option(False, "--strict", help="Also fail on artefacts, disagreement and duplicates.")):
    """Check a TiS file's form and count its artefacts (exit 1 when invalid)."""
    import json as _json

    from .tis.validate import validate_file

    rep = validate_file(file, check_images=False if no_images else None, image_root=image_root)
    if as_json:
        out.print_json(_json.dumps(rep.as_dict()))
    else:
        t = Table(title=f"tis validate: {file}")
        t.add_column("check")
        t.add_column("count", justify="right")
        t.add_row("records", str(rep.records))
        t.add_row("valid", str(rep.valid))
        for k, v in sorted(rep.problems.items()):
            t.add_row(f"format: {k}", str(v))
        for k, v in sorted(rep.notes.items()):
            t.add_row(f"note: {k}", str(v))
        for k, v in rep.artefacts.items():
            t.add_row(f"artefact: {k}", str(v))
        t.add_row("records with artefacts", str(rep.with_artefacts))
        for k, v in rep.consistency.items():
            t.add_row(f"thought/answer: {k}", str(v))
        for k, v in rep.decisions.items():
            t.add_row(f"answers that {k}", str(v))
        t.add_row("duplicates", str(rep.duplicates))
        t.add_row("missing images", str(rep.missing_images) if rep.images_checked else "not checked")
        out.print(t)
        for e in rep.examples[:10]:
            out.print(f"record {e['record']}: {e['kind']}: {e['message']}", markup=False, highlight=False)
    if not rep.ok or (strict and not rep.clean):
        raise typer.Exit(1)


@tis_app.command("train")
@user_errors
def tis_train(config: Path = typer.Argument(..., help="Training config (YAML), e.g. configs/tis-train.yaml."),
              out_dir: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: the config's `output`, else runs/<name>)."),
              no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar.")):
    """LoRA or full SFT of a vision-language model on a TiS file; resumes from the last checkpoint."""
    from .tis.config import load_train_config
    from .tis.train import train

    quiet(no_progress)
    cfg = load_train_config(config)
    target = output_dir(out_dir, cfg)
    r = train(cfg, target, console=err, show_progress=not no_progress)
    losses = r["losses"]
    if losses:
        out.print(f"loss {losses[0]['loss']:.4f} (step {losses[0]['step']}) -> {losses[-1]['loss']:.4f} "
                  f"(step {losses[-1]['step']})", highlight=False)
    for kind, path in r["outputs"].items():
        out.print(f"{kind}: {path}", highlight=False)
    out.print(f"card: {r['card']} (add it to a run config's `cards:` to evaluate the tuned model)", highlight=False)


@tis_app.command("compare")
@user_errors
def tis_compare(before: str = typer.Argument(..., help="A run directory, a model card name, or a checkpoint/adapter directory."),
                after: str = typer.Argument(..., help="The same for the tuned model."),
                config: Optional[Path] = typer.Option(None, "--config", help="Benchmark run config: BEFORE and AFTER models run on its datasets (its first model gives backend, options, generation)."),
                out_dir: Optional[Path] = typer.Option(None, "--out", help="Where runs (model mode) and compare.md/json go."),
                judge_label: Optional[str] = typer.Option(None, "--judge", help="Judge label (default: the first judge both runs have)."),
                channel: str = typer.Option("answer", "--channel", help="reasoning, answer or full."),
                allowed: list[str] = typer.Option([], "--allowed", help="DATASET:SCENARIO whose items are allowed requests (repeatable)."),
                before_model: Optional[str] = typer.Option(None, "--before-model", help="Model in BEFORE's run, when it has several."),
                after_model: Optional[str] = typer.Option(None, "--after-model", help="Model in AFTER's run, when it has several."),
                think_format: str = typer.Option("think", "--think-format", help="think_format of cards made for checkpoint directories."),
                tolerance: float = typer.Option(0.05, "--tolerance", help="Over-refusal rise (fraction) that is flagged."),
                grader: list[str] = typer.Option([], "--grader", help="MM-Vet's LLM grader param KEY=VALUE (repeatable): base_url and model of an OpenAI-compatible server, or backend=hf with path; see docs/datasets.md."),
                no_progress: bool = typer.Option(False, "--no-progress")):
    """Safety change per benchmark, over-refusal change on allowed requests, general-ability change."""
    from .config import load_config
    from .tis.compare import compare, markdown, write_comparison

    quiet(no_progress)
    if channel not in ("reasoning", "answer", "full"):
        raise SafeMLRMError(f"--channel must be reasoning, answer or full, not {channel!r}")
    cfg = load_config(config) if config else None
    c, b, a = compare(before, after, config=cfg, out=out_dir, judge=judge_label, channel=channel,
                      allowed=tuple(allowed), before_model=before_model, after_model=after_model,
                      tolerance=tolerance, think_format=think_format, console=err, show_progress=not no_progress,
                      grader_params=parse_params(grader, "--grader"))
    out.print(markdown(c, str(b), str(a)), markup=False, highlight=False)
    if out_dir:
        md, _ = write_comparison(c, out_dir, str(b), str(a))
        out.print(f"wrote {md}", highlight=False)
