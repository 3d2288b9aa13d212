"""Adaptive concurrency (AIMD): the limiter alone, the token budget, and whole runs against a server
that answers 429 once more requests are in flight than it can take."""
from __future__ import annotations

import asyncio
import re

import pytest

from safemlrm.pipeline.concurrency import AdaptiveLimiter, LimitSettings, TokenBudget, estimate_tokens
from safemlrm.config import parse_config
from safemlrm.errors import ConfigError
from safemlrm.models.base import ChatRequest
from safemlrm.models.cards import ModelCard
from safemlrm.models.openai_api import OpenAIBackend
from safemlrm.records import GenerationSettings, ImagePart, Message, TextPart
from safemlrm.pipeline.run import Runner
from api_judge import synthetic_cfg  # noqa: F401 (registers the judge test-api-judge)
from servers import Fault, FaultServer, fault_server  # noqa: F401 (fixture)
from run_sql import run_sql


class CapacityServer(FaultServer):
    """A FaultServer that answers 429 to every request beyond `capacity` being served, like a
    provider's concurrency limit; `served_max` is the most requests it served at once."""

    def __init__(self, capacity: int, delay: float):
        super().__init__(Fault("ok", seconds=delay))
        self.capacity = capacity
        self.rejected = 0
        self.serving = 0
        self.served_max = 0

    def _next(self, body, auth):
        fault = super()._next(body, auth)
        with self._lock:
            if self.serving >= self.capacity:
                self.rejected += 1
                return Fault("http", status=429)
            self.serving += 1
            self.served_max = max(self.served_max, self.serving)
            return fault

    def _sleep(self, seconds: float) -> None:  # an answered request sleeps once, then answers
        try:
            super()._sleep(seconds)
        finally:
            with self._lock:
                self.serving -= 1


# --- the limiter alone ----------------------------------------------------------------------------


def test_limit_settings_defaults_and_errors():
    s = LimitSettings.from_options({"concurrency": 8}, "model m")
    assert (s.initial, s.minimum, s.maximum, s.tokens_per_minute) == (8, 1, 8, None)  # ceiling = start
    s = LimitSettings.from_options({"concurrency": 4, "max_concurrency": 64, "min_concurrency": 2,
                                    "tokens_per_minute": 90000}, "model m")
    assert (s.initial, s.minimum, s.maximum, s.tokens_per_minute) == (4, 2, 64, 90000)
    with pytest.raises(ConfigError, match=r"model m: option 'max_concurrency' \(2\) is below 'concurrency' \(4\)"):
        LimitSettings.from_options({"concurrency": 4, "max_concurrency": 2}, "model m")
    with pytest.raises(ConfigError, match=r"judge j: option 'min_concurrency' \(9\) is above"):
        LimitSettings.from_options({"concurrency": 4, "min_concurrency": 9}, "judge j")
    with pytest.raises(ConfigError, match="option 'tokens_per_minute' must be an integer, got 'lots'"):
        LimitSettings.from_options({"tokens_per_minute": "lots"}, "model m")
    with pytest.raises(ConfigError, match="option 'concurrency' must be >= 1"):
        LimitSettings.from_options({"concurrency": 0}, "model m")
    # the one numeric-option validator: no bools, bytes or infinities taken for a count
    for bad in (True, b"4", float("inf"), 2.5, None):
        want = rf"model m: option 'concurrency' must be an integer, got {re.escape(repr(bad))}$"
        with pytest.raises(ConfigError, match=want):
            LimitSettings.from_options({"concurrency": bad}, "model m")


def test_openai_backend_validates_limits_at_build_time():
    card = ModelCard(name="m", hub_id="m", modalities=("text",))
    with pytest.raises(ConfigError, match=r"model m: backend openai: option 'max_concurrency' \(1\) is below"):
        OpenAIBackend(card, GenerationSettings(), {"base_url": "http://127.0.0.1:1/v1", "concurrency": 4,
                                                   "max_concurrency": 1})


def test_aimd_grows_by_one_per_window_halves_once_per_window_and_keeps_bounds():
    async def go():
        lim = AdaptiveLimiter(LimitSettings(initial=4, minimum=2, maximum=6))
        held = [await lim.acquire() for _ in range(4)]
        blocked = asyncio.ensure_future(lim.acquire())
        await asyncio.sleep(0.01)
        assert not blocked.done() and lim.in_flight == 4  # the fifth waits for a slot

        async def successes(k: int) -> None:  # k successes with the limit kept full, as busy workers keep it
            for _ in range(k):
                lim.release(held.pop(0), "ok")
                while lim.in_flight < int(lim.limit):
                    held.append(await lim.acquire())

        lim.release(held.pop(0), "ok")
        held.append(await asyncio.wait_for(blocked, 1))
        await successes(3)  # four successes at limit 4: one window, about +1
        assert 4.8 < lim.limit < 5.1 and lim.in_flight == int(lim.limit)
        await successes(40)
        assert lim.limit == 6 and lim.in_flight == 6  # the ceiling holds
        # six requests in flight under one window all come back 429: one cut, not six
        for t in held:
            lim.release(t, "overload")
        held.clear()
        assert lim.limit == 3 and lim.decreases == 1 and lim.overloads == 6
        # successes one at a time leave the limit unused: it does not grow
        for _ in range(10):
            lim.release(await lim.acquire(), "ok")
        assert lim.limit == 3
        # each new window may cut again, but never below the floor
        for _ in range(3):
            lim.release(await lim.acquire(), "overload")
        assert lim.limit == 2 and lim.decreases == 4
        lim.release(await lim.acquire(), "error")  # other failures leave the limit alone
        assert lim.limit == 2 and lim.in_flight == 0

    asyncio.run(go())


def test_cancelled_waiter_gives_its_slot_on():
    async def go():
        lim = AdaptiveLimiter(LimitSettings(initial=1))
        first = await lim.acquire()
        a = asyncio.ensure_future(lim.acquire())
        b = asyncio.ensure_future(lim.acquire())
        await asyncio.sleep(0.01)
        a.cancel()
        lim.release(first, "ok")
        t = await asyncio.wait_for(b, 1)
        assert lim.in_flight == 1
        lim.release(t, "ok")

    asyncio.run(go())


def test_token_budget_waits_and_settles_with_reported_usage():
    now = [0.0]
    budget = TokenBudget(600, clock=lambda: now[0])  # 10 tokens a second, 600 at most
    assert budget.wait_time(500) == 0 and budget.level == 100
    assert budget.wait_time(300) == pytest.approx(20.0)  # 200 short at 10/s
    now[0] = 20.0
    assert budget.wait_time(300) == 0 and budget.level == pytest.approx(0)
    budget.settle(reserved=300, used=120)  # the server said 120: 180 come back
    assert budget.level == pytest.approx(180)
    budget.settle(reserved=300, used=None)  # no usage reported: the reservation stands
    assert budget.level == pytest.approx(180)
    assert budget.wait_time(10_000) == pytest.approx((600 - 180) / 10)  # larger than the budget: a full bucket
    msgs = (Message(role="user", content=(TextPart(text="x" * 400), ImagePart(sha256="a" * 64))),)
    assert estimate_tokens(msgs, 64) == 100 + 1000 + 64


def test_backend_settles_token_budget_with_usage(fault_server):
    card = ModelCard(name="m", hub_id="m", modalities=("text",))
    backend = OpenAIBackend(card, GenerationSettings(max_new_tokens=50),
                            {"base_url": fault_server.base_url, "tokens_per_minute": 100_000})

    async def go():
        backend.limiter = AdaptiveLimiter(backend.limits)
        req = ChatRequest(key="k", probe_key="p", messages=(Message(role="user", content=(TextPart(text="hi there"),)),))
        c = await backend.agenerate(req)
        await backend.aclose()
        return c

    c = asyncio.run(go())
    assert c.error is None
    used = c.prompt_tokens + c.completion_tokens
    # reserved 2 + 50, settled to what the server reported
    assert backend.limiter.budget.level == pytest.approx(100_000 - used, abs=5)
    assert backend.limiter.successes == 1 and backend.limiter.in_flight == 0


# --- whole runs -----------------------------------------------------------------------------------


def _after_first_cut(lim: AdaptiveLimiter) -> list[float]:
    hist = list(lim.history)
    first = next(i for i in range(1, len(hist)) if hist[i][1] < hist[i - 1][1])
    return [v for _, v in hist[first:]]


def test_aimd_converges_below_the_servers_capacity_and_everything_completes(tmp_path):
    capacity, n = 6, 100
    with CapacityServer(capacity, delay=0.15) as target, CapacityServer(3, delay=0.05) as judge_srv:
        cfg = parse_config(synthetic_cfg(
            tmp_path, target.base_url, n, {"concurrency": 2, "max_concurrency": 32},
            [{"name": "test-api-judge", "params": {"base_url": judge_srv.base_url, "concurrency": 2,
                                                   "max_concurrency": 16}}]))
        runner = Runner(cfg, tmp_path / "run", show_progress=False)
        stats = runner.run()
    assert stats.model_calls == n and stats.errors == 0  # every request got through in the end
    lim = stats.limiters["model:echo"]
    assert target.rejected > 0 and lim.decreases >= 1  # it went past the capacity and backed off
    assert max(v for _, v in lim.history) > 2  # additive increase: it grew from the start
    after = _after_first_cut(lim)
    assert max(after) < capacity + 2  # once it found the level, it stays at or just above it
    assert sum(after) / len(after) < capacity  # ...and below it on average (the AIMD sawtooth)
    assert target.served_max <= capacity
    # the judge's server has a lower capacity: its own limiter found it, the target's was not touched
    jlim = stats.limiters["judge:test-api-judge"]
    assert jlim is not lim and judge_srv.rejected > 0 and jlim.decreases >= 1
    assert max(_after_first_cut(jlim)) <= 2 * 3  # far from its ceiling of 16
    labels = dict(run_sql(tmp_path / "run", "SELECT label, COUNT(*) FROM verdicts GROUP BY label"))
    assert labels == {"safe": 2 * n}  # answer and full (no reasoning): two verdicts each, none lost or doubled


def test_workers_never_exceed_the_ceiling(tmp_path):
    with FaultServer(Fault("ok", seconds=0.05)) as srv:
        cfg = parse_config(synthetic_cfg(tmp_path, srv.base_url, 40, {"concurrency": 3}, [{"name": "keyword"}]))
        stats = Runner(cfg, tmp_path / "run", show_progress=False).run()
    assert stats.model_calls == 40 and srv.max_in_flight == 3
    assert stats.limiters["model:echo"].max_in_flight == 3
