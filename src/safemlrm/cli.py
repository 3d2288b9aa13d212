"""The `safemlrm` command: run, judge, status, export, analyze, report, split and judge-eval here;
`list` and `render` in cli_lists.py, `tis` in cli_tis.py; what they share in cli_common.py."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import registry
from .cli_common import err, out, output_dir, parse_params, quiet, user_errors
from .cli_errors import watch
from .cli_output import check_format, emit, render_table
from .errors import SafeMLRMError
from .cli_lists import list_app, render_app
from .cli_tis import tis_app

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Safety audits of multimodal large reasoning models.")
app.add_typer(list_app, name="list")
app.add_typer(render_app, name="render")
app.add_typer(tis_app, name="tis")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        out.print(f"safemlrm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Safety audits of multimodal large reasoning models."""


@app.command()
@user_errors
def run(config: Path = typer.Argument(..., help="Run config (YAML)."),
        out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: the config's `output`, else runs/<name>)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="The run's preflight: count probes per model, dataset and attack, check data, modalities, cards, judges and servers; exit 2 naming each problem. Generates nothing."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
        ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]",
                                          help="Generate over a Ray cluster (Ray Data): ADDRESS, 'auto' for the "
                                               "cluster this machine is in, or none (last on the line) to start "
                                               "one here.")):
    """Run (or resume) an audit. A finished run re-run makes zero model calls."""
    from .config import load_config
    from .pipeline.run import Runner

    quiet(no_progress)
    cfg = load_config(config)
    if dry_run:
        from .pipeline.preflight import preflight, print_preflight

        raise typer.Exit(0 if print_preflight(preflight(cfg), cfg.name, out) else 2)
    run_dir = output_dir(out_dir, cfg)
    watch(run_dir)  # an interrupt reports what this run has stored
    stats = Runner(cfg, run_dir, console=err, show_progress=not no_progress, ray_address=ray).run()
    out.print(f"run directory: {run_dir}")
    out.print(f"probes {stats.probes}, model calls {stats.model_calls} ({stats.errors} errors), "
              f"verdicts {stats.verdicts} new + {stats.verdicts_cached} from cache")
    out.print(f"summary: {run_dir / 'summary.md'}")
    for line in stats.judge_warnings:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("serve-hint")
@user_errors
def serve_hint(config: Path = typer.Argument(..., help="Run config (YAML)."),
               port: int = typer.Option(8000, "--port", help="First port; each model gets the next one.")):
    """Print the `vllm serve` command for each model, and the `backend: openai` entry that reaches it."""
    import yaml

    from .config import load_config
    from .models.vllm import configured_port, serve_hint as hint
    from .pipeline.build import catalog_for

    cfg = load_config(config)
    catalog = catalog_for(cfg)
    for i, m in enumerate(cfg.models):
        card = catalog.get(m.card)
        command, entry = hint(card, m.options, configured_port(m.options) or port + i)
        if m.alias:
            entry["alias"] = m.alias
        generation = m.generation.model_dump(mode="json", exclude_unset=True)  # as configured, nothing added
        if generation:
            entry["generation"] = generation
        out.print(f"# {m.name}", markup=False, highlight=False)
        out.print(command, markup=False, highlight=False, soft_wrap=True)
        out.print(yaml.safe_dump({"models": [entry]}, sort_keys=False).rstrip(), markup=False, highlight=False)
        if card.chat_template:
            out.print(f"# write the card's chat template to {card.name}.jinja before serving", markup=False)
        out.print("")


@app.command()
@user_errors
def status(run_dir: Path = typer.Argument(..., help="A run directory."),
           fmt: str = typer.Option("table", "--format", help="table, json or csv.")):
    """Progress of a run, stage by stage, and whether it is running now."""
    from .results.status import run_status

    check_format(fmt)
    st = run_status(run_dir)
    emit(out, fmt, f"status: {run_dir} ({st.state})", ["stage", "what", "done", "of", "errors", "unparseable"], st.rows,
         note=st.note)
    if fmt == "table":
        for line in st.warnings:  # a judge whose verdicts are mostly unreadable is said out loud
            out.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
@user_errors
def export(run_dir: Path = typer.Argument(..., help="A run directory."),
           fmt: str = typer.Option("jsonl", "--format", help="jsonl, csv or parquet."),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (default: RUN_DIR/export.FORMAT).")):
    """One row per (probe, channel, judge), with the channel's text."""
    from .results.export import export_run

    path = export_run(run_dir, fmt, output)
    out.print(f"wrote {path}")


@app.command()
@user_errors
def report(run_dirs: list[Path] = typer.Argument(..., help="One or more run directories (pairs may span runs)."),
           out_dir: Path = typer.Option(..., "--out", help="Folder for report.html, summary.md and tables/."),
           blur: bool = typer.Option(True, "--blur/--no-blur", help="Start with images blurred (click to reveal)."),
           hide_unsafe: bool = typer.Option(True, "--hide-unsafe/--show-unsafe",
                                            help="Start with response text not judged safe hidden (click to reveal)."),
           max_samples: int = typer.Option(200, "--max-samples", help="Samples embedded per model and run."),
           judge: Optional[str] = typer.Option(None, "--judge", help="Judge of the headline figures (default: the first configured)."),
           channel: str = typer.Option("full", "--channel", help="Channel of the headline figures: full, answer or reasoning.")):
    """A self-contained HTML report (figures, sample browser, provenance), summary.md and tables."""
    from .report.html import ReportOptions, write_report

    opts = ReportOptions(blur_images=blur, hide_unsafe=hide_unsafe, max_samples=max_samples, judge=judge,
                         channel=channel)
    files = write_report(run_dirs, out_dir, opts)
    out.print(f"wrote {files.html} ({files.samples_embedded} of {files.samples_total} items in the sample browser), "
              f"{files.summary} and {len(files.tables)} tables in {out_dir / 'tables'}", markup=False, highlight=False,
              soft_wrap=True)


@app.command()
@user_errors
def judge(run_dir: Path = typer.Argument(..., help="A finished run directory."),
          judge_name: str = typer.Option(..., "--judge", help="A registered judge."),
          param: list[str] = typer.Option([], "--param", help="Judge parameter KEY=VALUE (repeatable)."),
          alias: Optional[str] = typer.Option(None, "--as", help="The name verdicts are filed under."),
          no_progress: bool = typer.Option(False, "--no-progress")):
    """Re-judge a run's stored responses with another judge: no new model generations."""
    quiet(no_progress)
    from .config import JudgeSpec, parse_config
    from .report.markdown import write_summary
    from .pipeline.build import build_judge
    from .pipeline.run import Runner
    from .store import Store

    spec = JudgeSpec(name=judge_name, params=parse_params(param), alias=alias)
    registry.load_plugins()
    j = build_judge(spec)
    with Store(run_dir, create=False) as store:
        cfg_data = store.get_meta("config")
        if cfg_data is None:
            raise SafeMLRMError(f"{run_dir} has no run config stored; is it a safemlrm run directory?")
        cfg = parse_config(cfg_data, f"{run_dir}/store.sqlite")
        runner = Runner(cfg, run_dir, console=err, show_progress=not no_progress)
        watch(run_dir, "verdicts")
        runner.judge(store, {spec.label: j})
        write_summary(store)
    out.print(f"verdicts {runner.stats.verdicts} new + {runner.stats.verdicts_cached} from cache "
              f"for judge {spec.label}")
    for line in runner.stats.judge_warnings:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
@user_errors
def analyze(run_dirs: list[Path] = typer.Argument(..., help="One or more run directories, read as one."),
            judges: list[str] = typer.Option([], "--judge", help="Judge to analyse (repeatable; default: every judge)."),
            channel: str = typer.Option("full", "--channel", help="Channel for the tax, blind spots, distributions and agreement."),
            fmt: str = typer.Option("table", "--format", help="table, csv or json."),
            output: Optional[Path] = typer.Option(None, "--output", "-o", help="csv: a folder (default RUN_DIR/analysis); json: a file (default: stdout)."),
            n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap resamples for the reasoning-tax interval."),
            seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
            factor: float = typer.Option(2.0, "--factor", help="Blind spot: flagged when ratio >= FACTOR x mean ratio."),
            threshold: Optional[float] = typer.Option(None, "--threshold", help="Attack success at score >= this (default: the run's metrics.asr_threshold, else each judge's own)."),
            unsafe_threshold: Optional[float] = typer.Option(None, "--unsafe-threshold", help="Self-correction: a channel is unsafe at score >= this (default: the run's metrics.unsafe_threshold, else the ASR threshold).")):
    """Reasoning tax, blind spots, self-correction, score distributions, judge agreement."""
    from .results.analysis import analyze as run_analysis
    from .results.analysis_output import FORMATS, print_tables, write_csv, write_json
    from .results import load_run

    if fmt not in FORMATS:
        raise SafeMLRMError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if channel not in ("reasoning", "answer", "full"):
        raise SafeMLRMError(f"--channel must be reasoning, answer or full, not {channel!r}")
    runs = [load_run(d) for d in run_dirs]
    result = run_analysis(runs, judges or None, channel, n_boot=n_boot, seed=seed, factor=factor, threshold=threshold,
                          unsafe_threshold=unsafe_threshold)
    if fmt == "table":
        print_tables(out, result, channel)
    elif fmt == "json":
        text = write_json(result, output)
        if output is None:
            sys.stdout.write(text + "\n")
        else:
            out.print(f"wrote {output}")
    else:
        for path in write_csv(result, output or run_dirs[0] / "analysis"):
            out.print(f"wrote {path}")


@app.command()
@user_errors
def split(card: str = typer.Option(..., "--card", help="Model card whose format splits the text (NAME or NAME[on])."),
          finish_reason: str = typer.Option("stop", "--finish-reason", help="stop | length (length: cut by the limit)."),
          reasoning_content: Optional[str] = typer.Option(None, "--reasoning-content", help="A server's separate reasoning field."),
          cards: Optional[Path] = typer.Option(None, "--cards", help="Extra model-card YAML file.")):
    """Split raw model text (stdin) with a card's reasoning format; print JSON reasoning/answer/outcome."""
    import json
    import sys

    from .errors import ConfigError
    from .models.cards import CardCatalog
    from .records import Completion

    if finish_reason not in ("stop", "length"):
        raise ConfigError(f"--finish-reason must be stop or length, not {finish_reason!r}")
    cat = CardCatalog.builtin()
    if cards:
        cat.extend_from(cards)
    c = cat.get(card)
    comp = Completion(key="stdin", probe_key="stdin", model=c.name, text=sys.stdin.read(),
                      finish_reason=finish_reason, reasoning_content=reasoning_content)
    r = c.reasoning_format.split(comp)
    print(json.dumps({"reasoning": r.reasoning, "answer": r.answer, "outcome": r.outcome.value,
                      "format": c.reasoning_format.name}, ensure_ascii=False))


def optional_values(argv: list[str]) -> list[str]:
    """`--ray` may come without its address (then Ray starts here): typer options always take one."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--ray" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "local")
            break
    return out


def main() -> None:  # pragma: no cover
    from .cli_errors import run_main

    run_main(app, optional_values(sys.argv[1:]))


@app.command("judge-eval")
@user_errors
def judge_eval(labels: Path = typer.Argument(..., help="Human-labelled items: JSONL (docs/judges.md), ReasoningShield or Qwen3GuardTest."),
               judge_specs: list[str] = typer.Option(..., "--judge", help="A judge: its name, or a YAML mapping "
                                                     "{name: ..., alias: ..., params: {...}} (repeatable)."),
               fmt: str = typer.Option("auto", "--format", help="auto, safemlrm, reasoningshield or qwen3guardtest."),
               borderline: str = typer.Option("unsafe", "--borderline", help="ReasoningShield's 0.5 (potentially harmful) counts as unsafe or safe."),
               output: Optional[Path] = typer.Option(None, "--output", "-o", help="The figures as JSON (default: LABELS.validation.json).")):
    """Measure judges against human labels: accuracy, precision, recall, F1, kappa per channel."""
    import json

    import yaml

    from .config import JudgeSpec
    from .judges.evaluate import TABLE_COLUMNS, evaluate, table_rows
    from .judges.labels import read_labels
    from .pipeline.build import build_judge

    if borderline not in ("unsafe", "safe"):
        raise SafeMLRMError(f"--borderline must be unsafe or safe, not {borderline!r}")
    items = read_labels(labels, fmt, borderline)  # type: ignore[arg-type]
    registry.load_plugins()
    specs = []
    for raw in judge_specs:
        data = yaml.safe_load(raw)
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict):
            raise SafeMLRMError(f"--judge {raw!r}: give a judge name or a mapping {{name: ..., params: {{...}}}}")
        try:
            specs.append(JudgeSpec(**data))
        except Exception as e:  # pydantic's message names the bad key
            raise SafeMLRMError(f"--judge {raw!r}: {e}") from None
    judges = {s.label: build_judge(s) for s in specs}
    result = evaluate(items, judges, labels)
    render_table(out, f"judge-eval: {labels} ({len(items)} items)", list(TABLE_COLUMNS), table_rows(result))
    path = output or labels.with_name(labels.name + ".validation.json")
    path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    out.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover
    main()
