"""The sample browser's data: a capped, seeded pick of each model's items with their texts (cut to
`max_chars`), every verdict on them, and their images as thumbnails; text not judged safe starts
hidden. Handed to the page as JSON the script reads with JSON.parse and shows with textContent."""
from __future__ import annotations

import base64
import io
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..untrusted import visible
from .runs import CHANNELS, ReportOptions, Run


SAFE_LABELS = frozenset({"refusal", "safe"})


# --- the sample browser -----------------------------------------------------------------------


def _pick(planned: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """Up to n items per model, taken in turn from each (dataset, attack) and, within those, from each
    scenario, so a cap still shows every setting; plan order within each."""
    picked = []
    for _, g in planned.groupby("model", sort=False):
        settings: OrderedDict[tuple, OrderedDict[str, list]] = OrderedDict()
        for rec in g.to_dict("records"):
            settings.setdefault((rec["dataset"], rec["attack"]), OrderedDict()).setdefault(
                rec["scenario"], []).append(rec)
        # bucket order: the first scenario of every setting, then the second of every setting, ...
        columns = [list(s.values()) for s in settings.values()]
        buckets = [col[i] for i in range(max(map(len, columns), default=0)) for col in columns if i < len(col)]
        queues = [iter(b) for b in buckets]
        taken = 0
        while queues and taken < n:
            alive = []
            for q in queues:
                if taken >= n:
                    break
                rec = next(q, None)
                if rec is not None:
                    picked.append(rec)
                    taken += 1
                    alive.append(q)
            queues = alive
    return picked


def thumbnail(data: bytes, px: int) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.thumbnail((px, px))
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGB", im.size, "white")
                bg.paste(im, mask=im.split()[-1])
                im = bg
            elif im.mode != "RGB":
                im = im.convert("RGB")
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _cut(text: str | None, limit: int) -> tuple[str | None, int]:
    if text is None or len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def collect_samples(runs: Sequence[Run], opts: ReportOptions) -> tuple[list[dict], dict[str, str], int]:
    samples: list[dict] = []
    images: dict[str, str] = {}
    total = 0
    for run in runs:
        planned, verdicts = run.res.planned, run.res.verdicts
        total += len(planned)
        by_completion = {k: g for k, g in verdicts.groupby("completion_key", sort=False)} if not verdicts.empty else {}
        for rec in _pick(planned, opts.max_samples):
            store = run.store
            probe = store.probe(rec["probe_key"])
            response = store.response(rec["completion_key"])
            prompt = []
            for m in probe.messages:
                shas = [p.sha256 for p in m.images]
                for sha in shas:
                    if sha not in images and store.blobs.has(sha):
                        uri = thumbnail(store.blobs.get(sha), opts.thumb_px)
                        if uri:
                            images[sha] = uri
                prompt.append({"role": m.role, "text": visible(m.text), "images": shas})
            vs = []
            g = by_completion.get(rec["completion_key"])
            if g is not None:
                for v in g.to_dict("records"):
                    vs.append({"judge": v["judge"], "channel": v["channel"], "label": v["label"],
                               "score": None if pd.isna(v["score"]) else float(v["score"]),
                               "rationale": visible(v["rationale"] or ""), "prefilter": bool(v["by_prefilter"])})
            split = response is not None and (response.reasoning is not None or response.outcome.value == "unclosed_think")
            texts: dict[str, str | None] = {"reasoning": None, "answer": None, "full": None}
            if response is not None:
                if split:
                    texts["reasoning"], texts["answer"] = response.reasoning, response.answer
                else:
                    texts["full"] = response.full
            cut = {}
            for ch, text in texts.items():
                kept, cut[ch] = _cut(text, opts.max_chars)
                texts[ch] = visible(kept) if kept is not None else None
            hide = {}
            for ch in CHANNELS:  # hidden unless every judge that read it called it safe or a refusal
                read = [v for v in vs if v["channel"] == ch or (ch == "full" and not split)]
                hide[ch] = bool(texts[ch]) and not (read and all(v["label"] in SAFE_LABELS for v in read))
            samples.append({
                "id": len(samples), "run": run.label, "model": rec["model"], "dataset": visible(rec["dataset"]),
                "scenario": visible(rec["scenario"]), "attack": rec["attack"], "sample_id": visible(str(rec["sample_id"])),
                "outcome": rec["outcome"] if isinstance(rec["outcome"], str) else "pending",
                "error": visible(rec["error"]) if isinstance(rec["error"], str) else None,
                "prompt": prompt, "query": visible(probe.judge_query), "split": split, **texts,
                "cut": {k: v for k, v in cut.items() if v}, "hide": hide, "verdicts": vs})
    return samples, images, total
