"""A token bucket per provider connection, shared by every process that reads from it
(docs/sync.md, "Rate limit").

The bucket holds ``burst`` tokens and refills at ``rate`` per second
(BILLING_PROVIDER_RATE_PER_SECOND). Taking a token is one atomic step that may leave the
bucket negative: the caller then sleeps for the time the refill needs, so concurrent callers
queue up fairly without polling. When the provider throttles (HTTP 429 or its rate-limit
error codes) the caller reports it and the connection's rate is halved for everyone; it
recovers slowly (``RECOVER_PER_SECOND`` of the full rate per second).

Where the state lives:

- **Redis** when ``REDIS_URL`` is set: one hash per connection, updated by a Lua script, so
  workers on several machines share it.
- **A locked file** in ``PORTAL_VAR_DIR`` otherwise (the embedded stack: SQLite, one
  machine): every process on the machine shares it through ``flock``.

Nothing here touches the database; rates are request counts, not money.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings

logger = logging.getLogger("billing.ratelimit")

RECOVER_PER_SECOND = 0.02  # of the full rate: from half back to full in 25 s without throttling
MIN_FACTOR = 1 / 64


@dataclass
class BucketState:
    tokens: float
    stamp: float
    factor: float = 1.0


def step(state: BucketState | None, now: float, rate: float, burst: float) -> tuple[BucketState, float]:
    """Take one token: the new state and how long the caller must wait (0 if none)."""
    if state is None:
        state = BucketState(tokens=burst, stamp=now)
    elapsed = max(0.0, now - state.stamp)
    factor = min(1.0, state.factor + RECOVER_PER_SECOND * elapsed)
    current = max(rate * factor, 0.01)
    tokens = min(burst, state.tokens + elapsed * current) - 1
    wait = 0.0 if tokens >= 0 else -tokens / current
    return BucketState(tokens=tokens, stamp=now, factor=factor), wait


def slow_down(state: BucketState | None, now: float, burst: float) -> BucketState:
    """The provider throttled: halve the rate for every caller and empty the bucket."""
    if state is None:
        state = BucketState(tokens=burst, stamp=now)
    return BucketState(tokens=min(state.tokens, 0.0), stamp=now, factor=max(MIN_FACTOR, state.factor / 2))


class _Store(Protocol):
    def take(self, key: str, rate: float, burst: float) -> float: ...

    def slow_down(self, key: str, burst: float) -> float: ...

    def factor(self, key: str) -> float: ...


class FileStore:
    """Bucket state in one small JSON file per connection, updated under ``flock``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _update(self, key: str, change: Any) -> Any:
        path = self.folder / f"{key}.json"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 4096)
            state = None
            if raw:
                try:
                    data = json.loads(raw)
                    state = BucketState(float(data["tokens"]), float(data["stamp"]), float(data["factor"]))
                except (ValueError, KeyError, TypeError):
                    state = None
            new_state, answer = change(state, time.time())
            if new_state is not None:
                body = json.dumps(
                    {"tokens": new_state.tokens, "stamp": new_state.stamp, "factor": new_state.factor}
                ).encode()
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, body)
            return answer
        finally:
            os.close(fd)

    def take(self, key: str, rate: float, burst: float) -> float:
        def change(state: BucketState | None, now: float) -> tuple[BucketState, float]:
            return step(state, now, rate, burst)

        return float(self._update(key, change))

    def slow_down(self, key: str, burst: float) -> float:
        def change(state: BucketState | None, now: float) -> tuple[BucketState, float]:
            new = slow_down(state, now, burst)
            return new, new.factor

        return float(self._update(key, change))

    def factor(self, key: str) -> float:
        def change(state: BucketState | None, now: float) -> tuple[None, float]:
            if state is None:
                return None, 1.0
            return None, min(1.0, state.factor + RECOVER_PER_SECOND * max(0.0, now - state.stamp))

        return float(self._update(key, change))


# The same arithmetic as step() / slow_down(), atomically in Redis. KEYS[1] the hash;
# ARGV: mode ("take" | "slow" | "factor"), now, rate, burst, recover, min factor.
_LUA = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
local stamp = tonumber(redis.call('HGET', KEYS[1], 'stamp'))
local factor = tonumber(redis.call('HGET', KEYS[1], 'factor'))
local now, rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local recover, minf = tonumber(ARGV[5]), tonumber(ARGV[6])
if tokens == nil then tokens, stamp, factor = burst, now, 1.0 end
local elapsed = math.max(0, now - stamp)
factor = math.min(1.0, factor + recover * elapsed)
local answer = 0
if ARGV[1] == 'factor' then return tostring(factor) end
if ARGV[1] == 'slow' then
  factor = math.max(minf, factor / 2)
  tokens = math.min(tokens, 0)
  answer = factor
else
  local current = math.max(rate * factor, 0.01)
  tokens = math.min(burst, tokens + elapsed * current) - 1
  if tokens < 0 then answer = -tokens / current end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now), 'factor', tostring(factor))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(answer)
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.script = self.client.register_script(_LUA)

    def _call(self, mode: str, key: str, rate: float, burst: float) -> float:
        args = [mode, repr(time.time()), repr(rate), repr(burst), repr(RECOVER_PER_SECOND), repr(MIN_FACTOR)]
        return float(self.script(keys=[f"portal:ratelimit:{key}"], args=args))

    def take(self, key: str, rate: float, burst: float) -> float:
        return self._call("take", key, rate, burst)

    def slow_down(self, key: str, burst: float) -> float:
        return self._call("slow", key, 1.0, burst)

    def factor(self, key: str) -> float:
        return self._call("factor", key, 1.0, 1.0)


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def default_store() -> _Store:
    """Redis when REDIS_URL is set, else a locked file under PORTAL_VAR_DIR."""
    url = getattr(settings, "REDIS_URL", "") or ""
    key = url or f"file:{settings.VAR_DIR}"
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = RedisStore(url) if url else FileStore(Path(settings.VAR_DIR) / "ratelimit")
            _stores[key] = store
        return store


class RateLimiter:
    """The bucket of one provider connection. ``acquire()`` before each provider read;
    ``throttled()`` when the provider said slow down."""

    def __init__(self, key: str, rate: float, *, burst: float | None = None, store: _Store | None = None) -> None:
        self.key = key
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.store = store or default_store()
        self.waited = 0.0

    def acquire(self) -> None:
        if self.rate <= 0:
            return
        wait = self.store.take(self.key, self.rate, self.burst)
        if wait > 0:
            self.waited += wait
            time.sleep(wait)

    def throttled(self) -> float:
        """Halve the connection's rate (shared); the new share of the full rate."""
        factor = self.store.slow_down(self.key, self.burst)
        logger.warning("provider throttled %s: rate now %.2f/s", self.key, self.rate * factor)
        return factor

    def factor(self) -> float:
        return self.store.factor(self.key)


def for_connection(connection: Any, rate: float) -> RateLimiter:
    """The shared bucket of a provider connection (keyed by its uuid)."""
    return RateLimiter(f"connection-{connection.uuid}", rate)
