"""What a run did, counted as it goes: printed by `safemlrm run`, read by the tests."""
from __future__ import annotations

from dataclasses import dataclass, field

from .concurrency import AdaptiveLimiter


@dataclass
class RunStats:
    probes: int = 0
    model_calls: int = 0
    errors: int = 0
    verdicts: int = 0
    verdicts_cached: int = 0
    planned: dict[str, int] = field(default_factory=dict)
    limiters: dict[str, AdaptiveLimiter] = field(default_factory=dict)  # by "model:NAME" / "judge:LABEL"
    judge_warnings: list[str] = field(default_factory=list)  # judges whose verdicts are mostly unparseable
