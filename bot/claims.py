"""Conversation claims: one process at a time answers a Slack conversation's queue.

Any replica may receive a conversation's next message; the one holding the conversation's
claim answers the queue, in order. A claim is a row with an expiry that its holder renews while
its worker lives, so the claim of a process that died lapses and another takes over. Taking is
one conditional write (insert, or update when lapsed or already ours), so two processes can
never both hold it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, exists, or_, tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select, update

from storage import ConversationClaimRow, Database, QueuedMessageRow

if TYPE_CHECKING:
    from bot.conversations import ThreadKey

__all__ = ["ConversationClaims"]


class ConversationClaims:
    def __init__(
        self,
        *,
        db: Database,
        worker_id: str,
        seconds: float,
        steady: Callable[[], bool] = lambda: True,
    ) -> None:
        self._db, self.worker_id, self._seconds, self._steady = db, worker_id, seconds, steady

    async def take(self, key: ThreadKey) -> str | None:
        """Claims the conversation for this process: "new" when nobody held it, "ours" when
        this process already did, "taken over" when its holder let it lapse (and may have
        stopped half-way through an answer); None while another live process holds it."""
        now = time.time()
        try:
            async with self._db.session() as session:
                session.add(
                    ConversationClaimRow(
                        team_id=key.team_id,
                        channel_id=key.channel_id,
                        thread_ts=key.thread_ts,
                        worker_id=self.worker_id,
                        expires_at=now + self._seconds,
                    )
                )
            return "new"
        except IntegrityError:
            pass  # claimed before: take it over only if it lapsed (or is ours already)
        mine = col(ConversationClaimRow.worker_id) == self.worker_id
        # Right after the database was away every claim looks lapsed: their holders get a
        # lease's time to renew before a claim is taken from them.
        takeable = or_(mine, col(ConversationClaimRow.expires_at) < now) if self._steady() else mine
        async with self._db.session() as session:
            holder = (
                await session.exec(select(ConversationClaimRow.worker_id).where(_is(key)))
            ).first()
            result = await session.exec(
                update(ConversationClaimRow)
                .where(_is(key), takeable)
                .values(worker_id=self.worker_id, expires_at=now + self._seconds)
            )
        if not result.rowcount:
            return None
        return "ours" if holder == self.worker_id else "taken over"

    async def release(self, key: ThreadKey) -> None:
        async with self._db.session() as session:
            await session.exec(
                delete(ConversationClaimRow).where(
                    _is(key), col(ConversationClaimRow.worker_id) == self.worker_id
                )
            )

    def renew(self, connection: Connection, until: float, keys: Sequence[ThreadKey]) -> None:
        """Extends the claims of the conversations this process is answering right now (only
        those: the claim of a worker that died here must lapse like any other). Called by the
        engine's heartbeat thread, on its own connection. One cached statement with an
        expanding row-value IN, whatever the number of keys (an OR of one clause per key was
        compiled afresh on every beat)."""
        rows = [(key.team_id, key.channel_id, key.thread_ts) for key in keys]
        for start in range(0, len(rows), 100):
            connection.execute(
                _RENEW,
                {"holder": self.worker_id, "keys": rows[start : start + 100], "new_expiry": until},
            )

    async def unclaimed(self, limit: int = 200) -> list[tuple[str, str, str]]:
        """Conversations with messages waiting and nobody (alive) answering them."""
        live_claim = exists().where(
            col(ConversationClaimRow.team_id) == QueuedMessageRow.team_id,
            col(ConversationClaimRow.channel_id) == QueuedMessageRow.channel_id,
            col(ConversationClaimRow.thread_ts) == QueuedMessageRow.thread_ts,
            col(ConversationClaimRow.expires_at) >= time.time(),
        )
        statement = (
            select(
                QueuedMessageRow.team_id, QueuedMessageRow.channel_id, QueuedMessageRow.thread_ts
            )
            .where(col(QueuedMessageRow.status) == "pending", ~live_claim)
            .distinct()
            .limit(limit)
        )
        async with self._db.session() as session:
            return [tuple(row) for row in (await session.exec(statement)).all()]  # type: ignore[misc]


_RENEW = (
    update(ConversationClaimRow)
    .where(
        col(ConversationClaimRow.worker_id) == bindparam("holder"),
        tuple_(
            col(ConversationClaimRow.team_id),
            col(ConversationClaimRow.channel_id),
            col(ConversationClaimRow.thread_ts),
        ).in_(bindparam("keys", expanding=True)),
    )
    .values(expires_at=bindparam("new_expiry"))
)


def _is(key: ThreadKey) -> Any:
    return and_(
        col(ConversationClaimRow.team_id) == key.team_id,
        col(ConversationClaimRow.channel_id) == key.channel_id,
        col(ConversationClaimRow.thread_ts) == key.thread_ts,
    )
