"""A customer chatting with flows through the real pipeline: the simulated phone posts to the
worker's webhook route, the processor runs the turn, the sender delivers to the phone."""

from __future__ import annotations

import uuid
from typing import Any

from loop_support import MARIA, conversation_of, drain

from support import Db, Row
from zapbase.simulator import ReceivedMessage, SimulatedUser, Simulator
from zapbase.worker.processor import Processor
from zapbase.worker.sender import Sender


class Chat:
    def __init__(
        self, db: Db, sim: Simulator, phone: SimulatedUser, processor: Processor, sender: Sender
    ) -> None:
        self.db, self.sim, self.phone, self.processor, self.sender = db, sim, phone, processor, sender
        self._seen = 0

    async def settle(self) -> list[ReceivedMessage]:
        """Process and send everything pending; what reached the phone since last time."""
        await drain(self.processor.run_once)
        await drain(self.sender.run_once)
        received = self.sim.messages_to(MARIA)
        new, self._seen = received[self._seen :], len(received)
        return new

    async def say(self, text: str) -> list[ReceivedMessage]:
        await self.phone.send_text(text)
        return await self.settle()

    async def tap(self, message: ReceivedMessage, option_id: str) -> list[ReceivedMessage]:
        if message.content.get("type") == "button":
            await self.phone.press_button(message, option_id)
        else:
            await self.phone.choose_row(message, option_id)
        return await self.settle()

    @property
    def conversation(self) -> uuid.UUID:
        return conversation_of(self.db, MARIA)

    def execution(self) -> Row:
        [row] = self.db.sql("select * from public.flow_executions order by started_at desc limit 1")
        return row

    def steps(self, execution_id: Any = None) -> list[tuple[str, str]]:
        execution_id = execution_id or self.execution()["id"]
        rows = self.db.sql("select block_id, outcome from public.flow_steps where execution_id = %s"
                           " order by seq", (execution_id,))
        return [(r["block_id"], r["outcome"]) for r in rows]


def texts(messages: list[ReceivedMessage]) -> list[str | None]:
    return [m.text for m in messages]


def options(message: ReceivedMessage) -> list[tuple[str, str]]:
    """(id, title) of a message's buttons or list rows."""
    content = message.content
    if content.get("type") == "button":
        return [(b["reply"]["id"], b["reply"]["title"]) for b in content["action"]["buttons"]]
    return [(r["id"], r["title"]) for s in content["action"]["sections"] for r in s["rows"]]
