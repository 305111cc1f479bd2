"""A claimed inbound message and the reply the bot decided on: plain values passed from
the inbound processor (`zapbase.worker.processor`) to a bot (`zapbase.bot`) and back."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["InboundMessage", "Outgoing", "Reply"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """One claimed row of `whatsapp_claim_inbound`, plus where its media was stored."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    whatsapp_number_id: uuid.UUID | None
    phone_number_id: str | None
    access_token: str | None
    wamid: str | None
    type: str
    content: str | None
    payload: Mapping[str, Any]
    media_id: str | None
    media_mime_type: str | None
    is_voice: bool
    interactive_reply_id: str | None
    conversation_mode: str
    bot_id: uuid.UUID | None
    wa_id: str | None
    user_id: str | None
    profile_name: str | None
    attempts: int
    may_reply: bool = True  # false for a blocked, opted-out or anonymised contact
    media_storage_path: str | None = None
    media_size: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> InboundMessage:
        names = [f.name for f in dataclasses.fields(cls) if f.name in row]
        return cls(**{name: row[name] for name in names})


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One message to queue with `whatsapp_queue_reply`: its Cloud API body and, for a
    model's answer, the AI figures kept on the row (model, tokens, latency)."""

    body: Mapping[str, Any]
    ai: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What answers one message: `messages` queued in order, then, with a `handoff`
    reason, the conversation handed to humans. Written with "processed" in one transaction."""

    messages: tuple[Outgoing, ...] = ()
    handoff: str | None = None

    def then(self, other: Reply) -> Reply:
        """This reply's messages followed by `other`'s (and its handoff, if any)."""
        return Reply(messages=(*self.messages, *other.messages), handoff=other.handoff or self.handoff)
