"""Conversation claims: one process at a time answers a conversation, a lapsed claim is taken
over (and says so), and the sweep finds conversations with waiting messages nobody answers."""

from __future__ import annotations

import asyncio

from sqlmodel import col, select, update

from assistants.heartbeat import Heartbeat
from assistants.leases import Lease
from bot.claims import ConversationClaims
from bot.conversations import ThreadKey
from storage import ConversationClaimRow, Database, QueuedMessageRow

KEY = ThreadKey("T1", "C1", "1700000000.000100")


def _claims(database: Database, worker: str, seconds: float = 30.0) -> ConversationClaims:
    return ConversationClaims(db=database, worker_id=worker, seconds=seconds)


async def _schema(database: Database) -> None:
    await database.upgrade()


async def test_one_live_holder_at_a_time_and_a_lapsed_claim_is_taken_over(
    database: Database,
) -> None:
    await _schema(database)
    a, b = _claims(database, "a", seconds=0.3), _claims(database, "b")
    assert await a.take(KEY) == "new"
    assert await a.take(KEY) == "ours"
    assert await b.take(KEY) is None  # a is alive
    heartbeat = Heartbeat(database.url, Lease(worker_id="a", seconds=0.3))
    heartbeat.register(lambda connection, until: a.renew(connection, until, [KEY]))
    for _ in range(3):  # renewed (as a's heartbeat thread does) past its first expiry
        await asyncio.sleep(0.15)
        await asyncio.to_thread(heartbeat.beat)
        assert await b.take(KEY) is None
    heartbeat.stop()
    await asyncio.sleep(0.4)  # a stopped renewing: its claim lapsed
    assert await b.take(KEY) == "taken over"
    assert await a.take(KEY) is None  # and b's is live now


async def test_concurrent_takes_give_the_conversation_to_exactly_one(database: Database) -> None:
    await _schema(database)
    workers = [_claims(database, f"w{i}") for i in range(8)]
    results = await asyncio.gather(*(w.take(KEY) for w in workers))
    assert sorted(r for r in results if r is not None) == ["new"]


async def test_release_frees_the_conversation_for_another_process(database: Database) -> None:
    await _schema(database)
    a, b = _claims(database, "a"), _claims(database, "b")
    assert await a.take(KEY) == "new"
    await b.release(KEY)  # not b's to release: nothing happens
    assert await b.take(KEY) is None
    await a.release(KEY)
    assert await b.take(KEY) == "new"


async def test_the_sweep_lists_waiting_conversations_without_a_live_claim(
    database: Database,
) -> None:
    await _schema(database)
    other = ThreadKey("T1", "C1", "1700000000.000200")
    async with database.session() as session:
        for key, ts in ((KEY, "1.1"), (KEY, "1.2"), (other, "2.1")):
            session.add(
                QueuedMessageRow(
                    team_id=key.team_id,
                    channel_id=key.channel_id,
                    thread_ts=key.thread_ts,
                    reply_thread_ts=key.thread_ts,
                    message_ts=ts,
                    user_id="U1",
                    text="hi",
                    created_at=0,
                )
            )
    a = _claims(database, "a")
    assert sorted(await a.unclaimed()) == sorted(
        [
            (KEY.team_id, KEY.channel_id, KEY.thread_ts),
            (other.team_id, other.channel_id, other.thread_ts),
        ]
    )
    await a.take(KEY)
    assert await a.unclaimed() == [(other.team_id, other.channel_id, other.thread_ts)]
    async with database.session() as session:  # a's claim lapses
        await session.exec(update(ConversationClaimRow).values(expires_at=0))
        await session.exec(
            update(QueuedMessageRow)
            .where(col(QueuedMessageRow.thread_ts) == other.thread_ts)
            .values(status="done")
        )
    assert await a.unclaimed() == [(KEY.team_id, KEY.channel_id, KEY.thread_ts)]


async def test_renew_extends_every_held_claim_of_this_worker_only(database: Database) -> None:
    await _schema(database)
    a, b = _claims(database, "a", seconds=1.0), _claims(database, "b", seconds=1.0)
    held = [ThreadKey("T1", f"C{i}", "1700000000.000100") for i in range(150)]  # 2 batches
    for key in held:
        assert await a.take(key) == "new"
    other = ThreadKey("T1", "C-b", "1700000000.000100")
    not_held = ThreadKey("T1", "C-a-idle", "1700000000.000100")
    assert await b.take(other) == "new"
    assert await a.take(not_held) == "new"
    heartbeat = Heartbeat(database.url, Lease(worker_id="a", seconds=1.0))
    heartbeat.register(lambda connection, until: a.renew(connection, until, [*held, other]))
    await asyncio.to_thread(heartbeat.beat)
    heartbeat.stop()
    async with database.session() as session:
        rows = (await session.exec(select(ConversationClaimRow))).all()
    expiry = {(r.channel_id, r.worker_id): r.expires_at for r in rows}
    renewed = [expiry[(key.channel_id, "a")] for key in held]
    assert min(renewed) > expiry[("C-a-idle", "a")]  # held ones extended, the idle one not
    assert expiry[("C-b", "b")] < min(renewed)  # b's claim is b's to renew
