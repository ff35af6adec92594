"""SQLite writers of this process take turns in arrival order instead of sleep-polling.

SQLite lets one connection write at a time. A connection that finds the write lock taken sleeps
in SQLite's busy handler (1, 2, 5 … up to 100 ms) and tries again, so under load a waiting
writer can miss release after release while newer writers slip in between its sleeps: the ack
of a Slack event waited seconds behind fifty streaming runs. Here the first write statement of
a transaction first waits for its turn on an asyncio lock, held until the transaction ends, so
this process's writers queue in order and no thread sleeps. SQLite's own busy wait still
settles contention with other processes sharing the file.

A write that cannot get its turn within the busy timeout fails the way SQLite would have
("database is locked"), so a session nested inside another's write fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.util import await_only

__all__ = ["WriteTurns"]

_READS = ("SELECT", "PRAGMA", "WITH", "EXPLAIN")
_HOLDS = "write_turn"  # key in the pooled connection's `info`: this connection has the turn


class WriteTurns:
    def __init__(self, timeout: float) -> None:
        self._lock = asyncio.Lock()
        self._timeout = timeout

    def install(self, engine: Engine) -> None:
        """Hooks the sync engine behind an `AsyncEngine` (the hooks run in its greenlets)."""
        event.listen(engine, "before_cursor_execute", self._before_statement)
        event.listen(engine, "commit", self._transaction_ended)
        event.listen(engine, "rollback", self._transaction_ended)
        # A connection closed or invalidated mid-transaction (a cancelled task, say) must
        # not keep the turn.
        for name in ("reset", "close", "invalidate", "detach"):
            event.listen(engine.pool, name, self._connection_let_go, named=True)

    def _before_statement(
        self, conn: Connection, _cursor: Any, statement: str, parameters: Any, *_: Any
    ) -> None:
        if conn.info.get(_HOLDS) or statement.lstrip()[:7].upper().startswith(_READS):
            return
        try:
            await_only(asyncio.wait_for(self._lock.acquire(), self._timeout))
        except TimeoutError as exc:
            locked = sqlite3.OperationalError("database is locked")
            raise OperationalError(statement, parameters, locked) from exc
        conn.info[_HOLDS] = True

    def _transaction_ended(self, conn: Connection) -> None:
        self._give_back(conn.info)

    def _connection_let_go(self, **event_args: Any) -> None:
        self._give_back(event_args["connection_record"].info)

    def _give_back(self, info: dict[Any, Any]) -> None:
        if info.pop(_HOLDS, False):
            self._lock.release()
