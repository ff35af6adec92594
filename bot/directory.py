"""Which assistant answers where: the synced assistants, the defaults per surface, and the
choices made with `/assistant use` (kept in the database, per channel or DM)."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from assistants import Clock
from bot.assistants_file import AssistantsFile
from storage import AssistantChoiceRow, Database

__all__ = ["AssistantDirectory", "is_dm"]


def is_dm(channel_id: str) -> bool:
    """Slack DM channel ids start with D."""
    return channel_id.startswith("D")


class AssistantDirectory:
    def __init__(
        self, *, db: Database, file: AssistantsFile, ids: dict[str, str], clock: Clock
    ) -> None:
        self._db, self._file, self._ids, self._clock = db, file, ids, clock

    def names(self) -> list[str]:
        return self._file.names()

    def describe(self, name: str) -> str:
        spec = next(a for a in self._file.assistants if a.name == name)
        return spec.description or (spec.instructions or "")[:80]

    def find(self, name: str) -> str | None:
        """The exact name of an assistant, matched case-insensitively."""
        wanted = name.strip().casefold()
        return next((n for n in self.names() if n.casefold() == wanted), None)

    def id_for(self, name: str) -> str:
        return self._ids[name]

    def default_for(self, channel_id: str) -> str:
        return self._file.default_for("dm" if is_dm(channel_id) else "channel")

    async def chosen(self, team_id: str, channel_id: str) -> str:
        async with self._db.session() as session:
            row = await _choice(session, team_id, channel_id)
        if row is not None and row.assistant_name in self._ids:
            return row.assistant_name
        return self.default_for(channel_id)

    async def choose(self, team_id: str, channel_id: str, name: str, user_id: str) -> None:
        now = self._clock.now()
        async with self._db.session() as session:
            row = await _choice(session, team_id, channel_id) or AssistantChoiceRow(
                team_id=team_id, channel_id=channel_id, assistant_name=name, updated_at=now
            )
            row.assistant_name, row.chosen_by, row.updated_at = name, user_id, now
            session.add(row)


async def _choice(
    session: AsyncSession, team_id: str, channel_id: str
) -> AssistantChoiceRow | None:
    statement = select(AssistantChoiceRow).where(
        col(AssistantChoiceRow.team_id) == team_id, col(AssistantChoiceRow.channel_id) == channel_id
    )
    return (await session.exec(statement)).first()
