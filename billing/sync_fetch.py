"""Reading a range of tenants from the provider, several chunks at a time (docs/sync.md,
"Concurrency").

:class:`ChunkReader` walks a stream of a connection's tenant ids: the ids come from the
caller's ``next_ids`` a chunk at a time (in the caller's thread: the caller's database
connection; billing.shards reads a shard's ids in one query and chains a worker's shards),
each chunk is read from the provider in a small thread pool
(billing.provider.read_children: ids in, snapshots out, no database), and the chunks come
back to the caller **in id order** for writing. At most ``concurrency`` reads are in flight
and at most ``concurrency + 1`` chunks are held (those in flight plus the one being written):
a new read starts only when the caller takes a chunk, so memory stays flat whatever the
number of tenants.

Every read first takes a token from the connection's shared bucket (billing.ratelimit). A
read the provider throttles even after the client's own retries (``RateLimited``) halves the
bucket's rate for every worker, halves this reader's window, waits and is read again: a
throttled run slows down and never fails for it. The window grows back by one after as many
good reads as it is wide.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from billing import provider as prov
from billing.ratelimit import RateLimiter
from providers.base import AccountSnapshot
from providers.errors import RateLimited
from tenants.models import ProviderConnection

logger = logging.getLogger("billing.sync")

# A chunk throttled this often in a row is given up (hours of throttling at the slowest rate).
MAX_THROTTLED = 200


@dataclass
class ReaderStats:
    """What the reader did, for the run's record and the tests: peaks, not timings."""

    reads: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    held: int = 0
    max_held: int = 0
    throttled: int = 0
    window: int = 0
    min_window: int = 0
    # Seconds the reads spent waiting for the shared rate limit's tokens (summed over threads).
    limit_wait: float = 0.0
    # Seconds the provider reads took (call and parsing, summed over threads): against the
    # bench's bare reads of the same chunks it shows whether the writer starves the readers.
    read_time: float = 0.0


class ChunkReader:
    def __init__(
        self,
        connection: ProviderConnection,
        next_ids: Callable[[int | None], list[int]],
        *,
        after: int | None,
        concurrency: int,
        limiter: RateLimiter | None,
        backoff: float = 0.5,
    ) -> None:
        self.connection = connection
        self.next_ids = next_ids
        self.after = after
        self.concurrency = max(1, concurrency)
        self.limiter = limiter
        self.backoff = backoff
        self.stats = ReaderStats(window=self.concurrency, min_window=self.concurrency)
        self._lock = threading.Lock()
        self._good = 0

    # -- the provider side (pool threads) ---------------------------------------------------

    def _read(self, ids: list[int]) -> tuple[AccountSnapshot, ...]:
        throttled = 0
        while True:
            waited = 0.0
            if self.limiter is not None:
                asked_at = time.monotonic()
                self.limiter.acquire()
                waited = time.monotonic() - asked_at
            with self._lock:
                self.stats.limit_wait += waited
                self.stats.in_flight += 1
                self.stats.reads += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            read_at = time.monotonic()
            try:
                accounts = prov.read_children(self.connection, ids)
            except RateLimited as err:
                throttled += 1
                self._throttled()
                if throttled >= MAX_THROTTLED:
                    raise
                wait = max(self.backoff * min(throttled, 8), float(err.retry_after or 0))
                logger.warning("sync read throttled (%d in a row); again in %.1fs", throttled, wait)
                time.sleep(wait)
                continue
            finally:
                with self._lock:
                    self.stats.in_flight -= 1
                    self.stats.read_time += time.monotonic() - read_at
            self._good_read()
            return accounts

    def _throttled(self) -> None:
        with self._lock:
            self.stats.throttled += 1
            self.stats.window = max(1, self.stats.window // 2)
            self.stats.min_window = min(self.stats.min_window, self.stats.window)
            self._good = 0
        if self.limiter is not None:
            self.limiter.throttled()

    def _good_read(self) -> None:
        with self._lock:
            self._good += 1
            if self.stats.window < self.concurrency and self._good >= self.stats.window:
                self.stats.window += 1
                self._good = 0

    # -- the database side (the caller's thread) --------------------------------------------

    def __iter__(self) -> Iterator[tuple[list[int], tuple[AccountSnapshot, ...]]]:
        """(ids asked, the provider's accounts) per chunk, ascending."""
        for batch in self.batches(1):
            yield from batch

    def batches(self, most: int) -> Iterator[list[tuple[list[int], tuple[AccountSnapshot, ...]]]]:
        """Chunks in id order, in batches for one write each: the next chunk, waited for,
        and up to ``most - 1`` chunks after it whose reads have already come back. A writer
        that keeps up writes chunk by chunk; one that falls behind writes the chunks waiting
        for it together (one transaction, fewer round trips). The held chunks stay at most
        ``concurrency + 1``: the window is refilled only for the first chunk of a batch.
        Once the keyset is exhausted the range is asked once more after the reads drain, so
        a tenant added above the last id during the walk is read in the same run."""
        window: deque[tuple[list[int], Future[tuple[AccountSnapshot, ...]]]] = deque()
        last = self.after
        exhausted = False
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="billing-sync-read") as pool:
            try:
                while True:
                    if not exhausted:
                        last, exhausted = self._fill(pool, window, last)
                    if not window:
                        # Drained: one more look for tenants added above the last id.
                        if not self.next_ids(last):
                            return
                        exhausted = False
                        continue
                    asked, future = window.popleft()
                    if not exhausted:
                        # Keep the window full while this chunk waits and is written.
                        last, exhausted = self._fill(pool, window, last)
                    batch = [(asked, future.result())]
                    while len(batch) < most and window and _ready(window[0][1]):
                        more, done = window.popleft()
                        batch.append((more, done.result()))
                    try:
                        yield batch
                    finally:
                        self._count_held(-len(batch))
            finally:
                for _, pending in window:
                    pending.cancel()

    def _fill(
        self,
        pool: ThreadPoolExecutor,
        window: deque[tuple[list[int], Future[tuple[AccountSnapshot, ...]]]],
        last: int | None,
    ) -> tuple[int | None, bool]:
        """Start reads until the window is full; (the last id asked, keyset exhausted)."""
        while len(window) < self.stats.window:
            ids = self.next_ids(last)
            if not ids:
                return last, True
            last = ids[-1]
            self._count_held(+1)
            window.append((ids, pool.submit(self._read, ids)))
        return last, False

    def _count_held(self, by: int) -> None:
        with self._lock:
            self.stats.held += by
            self.stats.max_held = max(self.stats.max_held, self.stats.held)


def _ready(future: Future[tuple[AccountSnapshot, ...]]) -> bool:
    """A read that has come back with accounts (a failed one is left for its own turn)."""
    return future.done() and not future.cancelled() and future.exception() is None
