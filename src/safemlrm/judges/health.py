"""Is a judge working? Before a run: can its server be reached. After: how many of its verdicts
are unparseable or failed calls, said loudly when they are most of them.

A judge that cannot be read is not a safe judge: its unparseable verdicts are counted, never
folded into safe, and a run whose judge mostly failed ends saying so rather than printing figures
made of the few verdicts that got through.
"""
from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import SafeMLRMError

if TYPE_CHECKING:
    from ..store import Store

FAILED_MARK = "the judge call failed"  # in the rationale of a verdict whose call failed (llm.LLMJudge._outcome)
REACH_TIMEOUT_S = 10.0


class JudgeUnreachable(SafeMLRMError):
    """A judge's server cannot be reached (or refuses the key) before any generation starts."""


@dataclass(frozen=True)
class JudgeHealth:
    judge: str
    verdicts: int
    unparseable: int  # every verdict without a score, the failed calls included
    failed: int  # of those, the calls that failed (HTTP 400/413/422, a local generation error)

    @property
    def mostly_unreadable(self) -> bool:
        return self.verdicts > 0 and 2 * self.unparseable > self.verdicts

    def warning(self) -> str:
        return (f"WARNING: judge {self.judge}: {self.unparseable} of {self.verdicts} verdicts are unparseable "
                f"({self.failed} failed calls); its figures rest on {self.verdicts - self.unparseable} verdicts. "
                f"See `safemlrm status` and the rationales in `safemlrm export`.")


def judge_health(store: Store, judges: list[str] | None = None) -> list[JudgeHealth]:
    """Per judge of a run's store (its planned completions only), in name order."""
    out = [JudgeHealth(*row) for row in store.judge_counts(FAILED_MARK)]
    return [h for h in out if judges is None or h.judge in judges]


def health_warnings(store: Store, judges: list[str] | None = None) -> list[str]:
    """One line per judge whose verdicts are mostly unparseable or failed."""
    return [h.warning() for h in judge_health(store, judges) if h.mostly_unreadable]


def check_reachable(what: str, url: str, api_key: str | None, timeout: float = REACH_TIMEOUT_S) -> None:
    """Any HTTP answer from `url` means a server is there; no answer, or one refusing the key, stops.
    The URL is not echoed whole (it may hold credentials): the caller names the judge and host."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as the backend: no proxy from env
    try:
        with opener.open(req, timeout=timeout):
            return
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise JudgeUnreachable(f"{what} refuses the API key (HTTP {e.code}); check the variable its "
                                   f"'api_key_env' names. Nothing was generated.") from None
        return  # 404, 405, 501...: a server answered
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise JudgeUnreachable(f"{what} cannot be reached ({reason}); start it or fix 'base_url'. "
                               f"Nothing was generated.") from None
