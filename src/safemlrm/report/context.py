"""The report's content: every analysis over the runs, as the template's context (figures and
tables per judge) and the tables written beside the report."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from ..errors import SafeMLRMError
from ..results import RunResults
from ..results.attack_order import configured_attacks, in_configured_order
from ..results.metrics import metric_settings, self_correction_threshold
from ..results.metrics_control import dose_response
from .dose_chart import dose_line
from .markdown import headline
from .figures import (OUTCOME_ORDER, Figure, blind_spot_figures, headline_figures, model_order, outcome_figure,
                      score_figures, selfcorrection_figures, table, tax_figure)
from .runs import CHANNELS, ReportOptions, Run, overlaps, provenance


DOSE_CAPTION = ("Each point: a swept model's ASR at one value of the swept setting, with its Wilson interval; "
                "dashed: its base model's ASR, a flat reference (docs/analysis.md#reasoning-control).")


# --- putting it together ----------------------------------------------------------------------


def _judges(runs: Sequence[Run]) -> list[str]:
    """Judges with verdicts in the runs: those the configs name first, in their order, then re-judges."""
    from ..config import JudgeSpec

    have = {label for run in runs for label in run.res.verdicts["judge"].drop_duplicates()}
    have &= {label for run in runs for label in run.res.scales}  # a judge's scale is needed to read it
    found: list[str] = []
    for run in runs:
        for spec in (run.meta.get("config") or {}).get("judges", []):
            label = JudgeSpec.model_validate(spec).label
            if label in have and label not in found:
                found.append(label)
    found += sorted(have - set(found))
    return found


def _concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def agreement_rows(analysis: Any, results: list[RunResults], judges: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    """Every pair of judges on every channel: agreement on attack success and Cohen's kappa."""
    rows, confusions = [], []
    for i, a in enumerate(judges):
        for b in judges[i + 1:]:
            for ch in CHANNELS:
                ag = analysis.judge_agreement(results, a, b, channel=ch)
                if ag["n"] == 0:
                    continue
                conf = ag.pop("confusion")
                rows.append(ag)
                if ch == "full":
                    confusions.append({"title": f"{a} (rows) against {b} (columns), full response, 1 = attack success",
                                       "table": table(conf.reset_index())})
    return pd.DataFrame(rows), confusions


def frontier_view(results: list[RunResults], judge: str, channel: str, asr_at: float | None, scale: Any,
                  pairs: pd.DataFrame, order: list[str], colours: dict[str, str]) -> dict[str, Any]:
    """The attack-success-against-over-refusal figure and its table (report/frontier.py)."""
    from .frontier import frontier_rows, frontier_svg

    threshold = asr_at if asr_at is not None else (scale.success_at if scale is not None else 1.0)
    rows = frontier_rows(results, judge, channel, threshold)
    fig = Figure(frontier_svg(rows, pairs, order, colours, judge, channel),
                 "Each dot: a model; x its refusal rate on requests it should help with, y its ASR on harmful "
                 "requests; whiskers: Wilson 95% intervals. A base model and its reasoning model share a hue "
                 "(light: base) and are joined by a dashed line. Lower left is better.")
    return {"frontier": fig, "frontier_table": table(rows, pct=("asr", "asr_lo", "asr_hi", "over_refusal",
                                                                  "over_refusal_lo", "over_refusal_hi"))}


def build(runs: Sequence[Run], opts: ReportOptions) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The template's context and the tables written beside the report."""
    from ..results import analysis

    results = [r.res for r in runs]
    judges = _judges(runs)
    if opts.judge is not None and opts.judge not in judges:
        raise SafeMLRMError(f"--judge {opts.judge!r} has no verdicts in these runs; judges: "
                            f"{', '.join(judges) or 'none'}")
    primary = opts.judge or (judges[0] if judges else None)
    ordered = ([primary] if primary else []) + [j for j in judges if j != primary]
    asr_at, harmful_at, confidence = metric_settings(runs[0].res.config, None, None, None)

    rates = analysis.rates(results, asr_at, harmful_at, confidence)
    outcomes = _concat(r.res.outcomes().assign(run=r.label) for r in runs)
    if not outcomes.empty:  # runs have different outcome columns: a count missing in a run is 0
        keys = ["run", "model", "dataset", "attack"]
        counts = [c for c in OUTCOME_ORDER if c in outcomes] + sorted(
            c for c in outcomes if c not in keys and c not in OUTCOME_ORDER)
        outcomes = outcomes[keys + counts].fillna({c: 0 for c in counts}).astype({c: int for c in counts})
    attack_order = configured_attacks(r.res.config for r in runs)
    rates, outcomes = in_configured_order(rates, attack_order), in_configured_order(outcomes, attack_order)
    pairs = analysis.model_pairs(results)
    order, colours = model_order(runs, pairs)
    tables: dict[str, pd.DataFrame] = {"metrics": rates, "outcomes": outcomes, "model_pairs": pairs}
    scales = {label: s for r in runs for label, s in r.res.scales.items()}
    same = ("judge", "channel", "threshold")

    from ..judges.correction import corrected_rates  # beside the raw rate, for judges citing a validation file

    judges_meta = {label: m for r in reversed(runs) for label, m in r.res.judges.items()}
    corrected = corrected_rates(rates, judges_meta, asr_at)
    tables["corrected_rates"] = corrected
    from ..results.trace_findings import all_trace_findings

    tables["trace_findings"] = traces = all_trace_findings(results, judges, judges_meta, asr_at)
    views, prefilters = [], []
    cards = {name: m.get("card") or {} for r in runs for name, m in r.res.models.items()}
    has_sweep = False
    for j in ordered:
        dose = dose_response(rates, cards, j, opts.channel)  # reasoning control: ASR along a sweep
        has_sweep = has_sweep or not dose.empty
        tables[f"dose_response-{safe_name(j)}"] = dose
        tax = analysis.reasoning_tax(results, j, channel=opts.channel, threshold=asr_at)
        blind = analysis.blind_spots(results, j, channel=opts.channel, threshold=asr_at)
        sc = analysis.self_correction(results, j, threshold=self_correction_threshold(runs[0].res.config, None, asr_at))
        dists = {ch: in_configured_order(analysis.score_distribution(results, j, ch), attack_order) for ch in CHANNELS}
        prefilters.append(analysis.prefilter_share(results, j))
        name = safe_name(j)
        tables[f"asr_by_think_length-{name}"] = think_asr = analysis.asr_by_think(results, j, opts.channel, asr_at)
        tables.update({f"reasoning_tax-{name}": tax, f"blind_spots-{name}": blind, f"self_correction-{name}": sc})
        tables.update({f"scores-{name}-{ch}": d for ch, d in dists.items()})
        rj = rates[rates["judge"] == j] if not rates.empty else rates
        quality = rj[rj["scenario"] == "ALL"] if not rj.empty else rj
        views.append({
            "judge": j, "primary": j == primary,
            "headline": headline_figures(rates, j, opts.channel, order, colours),
            "headline_table": table(headline(rj), drop=("judge",)),
            "tax": tax_figure(tax, j, opts.channel), "tax_table": table(tax, drop=same),
            **frontier_view(results, j, opts.channel, asr_at, scales.get(j), pairs, order, colours),
            "think_asr_table": table(think_asr, drop=("judge", "channel")),
            "blind": blind_spot_figures(blind, j, opts.channel),
            "blind_table": table(blind[blind["flagged"]], drop=(*same, "factor")),
            "selfcorr": selfcorrection_figures(sc), "selfcorr_table": table(sc, drop=same),
            "dose": Figure(dose_line(dose, title=f"ASR against the swept value ({j}, {opts.channel} response)"),
                           DOSE_CAPTION), "dose_table": table(dose),
            "scores": [f for ch in CHANNELS for f in score_figures(dists[ch], j, ch, order, scales.get(j))],
            "corrected": table(corrected[corrected["judge"] == j], drop=("judge",),
                               pct=("asr", "asr_lo", "asr_hi", "asr_corrected", "corrected_lo", "corrected_hi",
                                    "sensitivity", "specificity")),
            "quality": table(quality[["model", "dataset", "attack", "channel", "planned", "judged", "unparseable",
                                      "absent"]] if not quality.empty else None),
        })
    agreement, confusions = agreement_rows(analysis, results, judges)
    prefilter = _concat(prefilters)
    tables["judge_agreement"] = agreement
    tables["prefilter_share"] = prefilter
    tables["think_lengths"] = think = analysis.think_length_distribution(results)
    ctx = {
        "views": views, "primary": primary, "judges": judges, "channel": opts.channel, "overlaps": overlaps(runs),
        "has_pairs": not pairs.empty, "has_sweep": has_sweep,
        "corrected_any": not corrected.empty,
        "trace_findings": table(traces, drop=("threshold",), pct=("superficial_share", "superficial_lo",
                                                                 "superficial_hi", "complied_share", "complied_lo",
                                                                 "complied_hi")),
        "outcome_figure": outcome_figure(outcomes, order), "outcome_table": table(outcomes),
        "agreement": table(agreement), "confusions": confusions, "prefilter": table(prefilter),
        "think_lengths": table(think),
        "provenance": [provenance(r) for r in runs],
    }
    return ctx, tables
