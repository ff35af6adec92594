"""Run leases: which process executes a run, for how long, and when another may take over.

Every process that executes runs is a *worker* with an id. A run it executes carries that id
and a lease (`run.lease_expires_at`, Unix seconds) which the worker renews while the run's task
lives. A run whose lease lapsed has lost its worker (killed, partitioned, or the task died): any
worker may take it over. Leases use real time, not the engine's clock: they measure whether a
process is alive, while the engine's clock decides Assistants semantics such as `expires_at`.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Update
from sqlmodel import col, update

from storage import RunRow

__all__ = ["Lease", "default_worker_id", "release"]


def default_worker_id() -> str:
    """host-pid-random: unique per process start, and readable in `run.worker_id`."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Lease:
    worker_id: str = field(default_factory=default_worker_id)
    #: Seconds a lease lives without renewal; renewed every third of it.
    seconds: float = 15.0

    @staticmethod
    def now() -> float:
        return time.time()

    def until(self) -> float:
        return self.now() + self.seconds

    def grant(self, row: RunRow) -> None:
        """Makes this worker the run's executor."""
        row.worker_id, row.lease_expires_at = self.worker_id, self.until()

    def held_elsewhere(self, row: RunRow) -> bool:
        """Another worker executes the run and is still alive (its lease has not lapsed)."""
        if row.worker_id is None or row.worker_id == self.worker_id:
            return False
        return row.lease_expires_at is not None and row.lease_expires_at >= self.now()

    def renewal(self, key: Any, held: Sequence[Any], until: float) -> Update:
        """The statement renewing this worker's leases on the rows whose `key` is in `held`
        (runs, files being indexed): rows another worker took meanwhile are left alone."""
        table = key.class_
        return (
            update(table)
            .where(col(key).in_(held), col(table.worker_id) == self.worker_id)
            .values(lease_expires_at=until)
        )

    def lapsed(self, row: RunRow) -> bool:
        """Nobody is executing the run any more: no lease, or one left to run out."""
        return row.lease_expires_at is None or row.lease_expires_at < self.now()


def release(row: RunRow) -> None:
    """The run stops being executed (it paused for outputs or ended)."""
    row.worker_id, row.lease_expires_at = None, None
