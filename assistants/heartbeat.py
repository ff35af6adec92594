"""The heartbeat: renews this process's leases from a thread with a database connection of
its own.

Leases say "this process is alive and still working on it". Renewed from the event loop, they
lapsed under load: with every pooled connection busy and the loop saturated, a renewal waited
longer than the lease, and another replica took over work that was still being done (answers
given twice). A thread with its own connection renews on time however busy the loop is.

Each kind of lease registers a renewal: a function given a (synchronous) connection and the
new expiry, which updates the leases its owner holds now. Owners keep what they hold in a
snapshot the thread can read safely (a tuple replaced whole, never mutated).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from assistants.leases import Lease

__all__ = ["Heartbeat", "Renewal"]

log = logging.getLogger("assistants.heartbeat")

#: Updates the leases one owner holds, to expire at the given Unix time.
Renewal = Callable[[Connection, float], None]


class Heartbeat:
    def __init__(self, url: str, lease: Lease) -> None:
        sync_url = make_url(url)
        if sync_url.drivername == "sqlite+aiosqlite":
            sync_url = sync_url.set(drivername="sqlite")
        options = {"connect_args": {"timeout": 30}} if sync_url.drivername == "sqlite" else {}
        self._engine = create_engine(sync_url, poolclass=NullPool, **options)
        self._lease = lease
        self._renewals: list[Renewal] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_at = float("-inf")  # time.monotonic() of the last failed renewal

    def steady(self) -> bool:
        """Whether other processes' leases can be judged: not while, nor for one lease after,
        this process could not reach the database. Nobody could renew then, so every lease
        looks lapsed when it returns; the holders get a lease's time to renew before anyone
        takes their work (which they may well have done meanwhile)."""
        return time.monotonic() - self._failed_at > self._lease.seconds

    def database_trouble(self) -> None:
        """Called by anyone who saw the database fail: the takeovers wait (see `steady`)."""
        self._failed_at = time.monotonic()

    def register(self, renewal: Renewal) -> None:
        self._renewals.append(renewal)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="lease heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._engine.dispose()

    def beat(self) -> None:
        """Renews every registered lease once (the thread does this every third of a lease)."""
        with self._engine.begin() as connection:
            until = self._lease.until()
            for renewal in self._renewals:
                renewal(connection, until)

    def _beat(self) -> None:
        while not self._stop.wait(self._lease.seconds / 3):
            try:
                self.beat()
            except Exception as exc:  # the database is away: the next beat tries again
                self.database_trouble()
                log.warning("lease renewal failed: %s", type(exc).__name__)
