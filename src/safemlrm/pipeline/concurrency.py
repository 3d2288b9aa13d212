"""Adaptive concurrency for API targets and judges: AIMD limits and a tokens-per-minute budget.

A limiter bounds the HTTP attempts in flight. It starts at `concurrency`; every success adds
`1 / limit` (so the limit grows by one per window of `limit` successes, as TCP congestion
avoidance does), but only while the limit is in use: requests waiting out a retry do not make an
idle limit grow; a 429 or a timeout halves it. Only one decrease counts per window: the requests
already in flight when the limit was cut were sent under the old limit, and their 429s say
nothing new, so they do not cut it again. The limit stays between `min_concurrency` and
`max_concurrency`; the ceiling defaults to the start, so a configured concurrency is never
exceeded unless a ceiling is given.

Targets and judges each get their own limiter: a judge hitting its provider's rate limit does not
slow the target down, nor the other way round. The backend reports each attempt's outcome
(`OpenAIBackend.limiter`), the limiter never sees a request body.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError
from ..options import number_option
from ..records import Message

Signal = Literal["ok", "overload", "error"]

LIMIT_OPTIONS = ("concurrency", "min_concurrency", "max_concurrency", "tokens_per_minute")

# What an image costs against a token budget when the provider has not said yet (OpenAI's
# high-detail 1024x1024 tile count is about this); refunded or charged once usage comes back.
IMAGE_TOKENS = 1000


def _int_option(where: str, name: str, value: Any, minimum: int) -> int:
    return number_option(f"{where}: option {name!r}", value, minimum=minimum, integer=True)


@dataclass(frozen=True)
class LimitSettings:
    initial: int
    minimum: int = 1
    maximum: int = 0  # 0: the same as initial
    tokens_per_minute: int | None = None
    increase: float = 1.0  # added per window of `limit` successes
    decrease: float = 0.5  # the limit is multiplied by this on a 429 or a timeout

    def __post_init__(self) -> None:
        if self.maximum == 0:
            object.__setattr__(self, "maximum", max(self.initial, self.minimum))

    @classmethod
    def from_options(cls, options: Mapping[str, Any], where: str, default: int = 16) -> LimitSettings:
        """Read concurrency, min_concurrency, max_concurrency and tokens_per_minute from options."""
        initial = _int_option(where, "concurrency", options.get("concurrency", default), 1)
        minimum = _int_option(where, "min_concurrency", options.get("min_concurrency", 1), 1)
        maximum = _int_option(where, "max_concurrency", options.get("max_concurrency", initial), 1)
        if minimum > initial:
            raise ConfigError(f"{where}: option 'min_concurrency' ({minimum}) is above 'concurrency' ({initial})")
        if maximum < initial:
            raise ConfigError(f"{where}: option 'max_concurrency' ({maximum}) is below 'concurrency' ({initial})")
        tpm = options.get("tokens_per_minute")
        tpm = None if tpm is None else _int_option(where, "tokens_per_minute", tpm, 1)
        return cls(initial=initial, minimum=minimum, maximum=maximum, tokens_per_minute=tpm)


class TokenBudget:
    """Tokens per minute as a bucket that refills continuously; a request reserves its estimate
    before it is sent and settles up with the usage the server reports."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = float(per_minute)
        self._clock = clock
        self._t = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._t) * self.rate)
        self._t = now

    def wait_time(self, tokens: int) -> float:
        """Seconds until `tokens` may be taken; 0 takes them now. A request larger than the whole
        budget waits for a full bucket rather than forever."""
        self._refill()
        need = min(float(tokens), self.capacity)
        if self.level >= need:
            self.level -= need
            return 0.0
        return (need - self.level) / self.rate

    async def take(self, tokens: int) -> None:
        while (wait := self.wait_time(tokens)) > 0:
            await asyncio.sleep(wait)

    def settle(self, reserved: int, used: int | None) -> None:
        """Give back what was reserved but not used (or charge what was used beyond it)."""
        if used is None:
            return  # the server did not say: the estimate stands
        self._refill()
        self.level = min(self.capacity, self.level + min(float(reserved), self.capacity) - used)


def estimate_tokens(messages: tuple[Message, ...], max_new_tokens: int) -> int:
    """A request's cost before it is sent: about four characters a token, a flat cost per image,
    and the whole answer allowance (providers count max_tokens against the budget too)."""
    chars = sum(len(m.text) for m in messages)
    images = sum(len(m.images) for m in messages)
    return chars // 4 + images * IMAGE_TOKENS + max_new_tokens


@dataclass
class Ticket:
    epoch: int
    tokens: int


class AdaptiveLimiter:
    """AIMD limit on attempts in flight (see the module docstring). One event loop at a time."""

    def __init__(self, settings: LimitSettings, name: str = ""):
        self.settings = settings
        self.name = name
        self.limit = float(settings.initial)
        self.in_flight = 0
        self.max_in_flight = 0
        self.successes = 0
        self.overloads = 0
        self.decreases = 0
        self.history: deque[tuple[float, float]] = deque([(time.monotonic(), self.limit)], maxlen=4096)
        self.budget = TokenBudget(settings.tokens_per_minute) if settings.tokens_per_minute else None
        self._epoch = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        return (f"AdaptiveLimiter({self.name!r}, limit={self.limit:.2f}, in_flight={self.in_flight}, "
                f"range={self.settings.minimum}..{self.settings.maximum})")

    @property
    def ceiling(self) -> int:
        return self.settings.maximum

    def _slots(self) -> int:
        return max(self.settings.minimum, int(self.limit + 1e-9)) - self.in_flight

    async def acquire(self, tokens: int = 0) -> Ticket:
        while self._slots() <= 0 or self._waiters:  # queued callers go first
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._wake()  # it was handed a slot it will not use: pass it on
                raise
            if self._slots() > 0:
                break
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        ticket = Ticket(self._epoch, tokens)
        if self.budget is not None and tokens:
            try:
                await self.budget.take(tokens)
            except BaseException:
                self.in_flight -= 1
                self._wake()
                raise
        return ticket

    def release(self, ticket: Ticket, signal: Signal, used_tokens: int | None = None) -> None:
        saturated = self.in_flight >= int(self.limit + 1e-9)
        self.in_flight -= 1
        if signal == "ok":
            self.successes += 1
            if saturated:  # a limit that is not used has not been tested: it does not grow
                self._set(min(float(self.settings.maximum),
                              self.limit + self.settings.increase / max(1.0, self.limit)))
        elif signal == "overload":
            self.overloads += 1
            if ticket.epoch == self._epoch:  # the first overload of this window
                self._epoch += 1
                self.decreases += 1
                self._set(max(float(self.settings.minimum), math.floor(self.limit * self.settings.decrease)))
        if self.budget is not None and ticket.tokens:
            self.budget.settle(ticket.tokens, used_tokens)
        self._wake()

    def _set(self, limit: float) -> None:
        if limit != self.limit:
            self.limit = limit
            self.history.append((time.monotonic(), limit))

    def _wake(self) -> None:
        free = self._slots()
        while free > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= 1


def attach(obj: Any, limiter: AdaptiveLimiter) -> bool:
    """Hand `limiter` to an object that takes one (an attribute named `limiter`), or to the
    `backend` it calls through. False when neither takes one: the caller bounds concurrency alone."""
    for target in (obj, getattr(obj, "backend", None)):
        if target is not None and hasattr(target, "limiter"):
            target.limiter = limiter
            return True
    return False
