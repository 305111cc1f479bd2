"""A simulated WhatsApp user: writes to a business number and reports delivery statuses.

Each action builds the webhook Meta would send, encodes it in Meta's escaped form, signs
the exact bytes with the app secret (`X-Hub-Signature-256`) and POSTs them to the webhook
URL through the injected `httpx.AsyncClient` (an `ASGITransport` onto the worker in tests).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from zapbase.simulator import webhooks
from zapbase.simulator.faults import webhook_error
from zapbase.simulator.state import ReceivedMessage, Simulator, new_wamid
from zapbase.whatsapp.signature import HEADER, sign

__all__ = ["SimulatedUser", "WebhookDelivery"]

_logger = logging.getLogger(__name__)

STATUSES = ("sent", "delivered", "read", "played")


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookDelivery:
    """One POST made to the webhook URL and the receiver's answer."""

    payload: Mapping[str, Any] = field(repr=False)
    body: bytes = field(repr=False)
    signature: str
    status_code: int
    # The inbound message's wamid, or the wamid a status is about.
    wamid: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.status_code < 300


class SimulatedUser:
    """The phone of one WhatsApp user chatting with one business number.

    **Parameters**

    * **simulator** - the `Simulator` holding the numbers, media and the inbox.
    * **client** - httpx client used to POST webhooks.
    * **wa_id** - the user's number, digits only (a leading `+` is dropped).
    * **name** - profile name shown in `contacts[].profile.name`.
    * **phone_number_id** - business number written to; the first configured by default.
    * **webhook_url** - overrides the simulator's configured webhook URL.
    * **user_id** - a business-scoped user id (2026 usernames) sent alongside `wa_id`.
    """

    def __init__(
        self,
        simulator: Simulator,
        client: httpx.AsyncClient,
        *,
        wa_id: str,
        name: str = "Maria Silva",
        phone_number_id: str | None = None,
        webhook_url: str | None = None,
        user_id: str | None = None,
    ) -> None:
        self.wa_id = wa_id.removeprefix("+")
        if not self.wa_id.isdigit():
            raise ValueError(f"wa_id must be digits: {wa_id!r}")
        number = simulator.number(phone_number_id) if phone_number_id else simulator.default_number
        if number is None:
            raise ValueError(f"unknown phone_number_id {phone_number_id!r}")
        url = webhook_url or simulator.config.webhook_url
        if not url:
            raise ValueError("no webhook URL: configure the simulator or pass webhook_url")
        self.number = number
        self.name = name
        self.user_id = user_id
        self._sim = simulator
        self._http = client
        self._url = url
        self._reported: dict[str, set[str]] = {}

    @property
    def inbox(self) -> list[ReceivedMessage]:
        """Messages the business sent to this user, oldest first."""
        return [m for m in self._sim.inbox if self._is_mine(m)]

    # -- the user writes ---------------------------------------------------------------------

    async def send_text(self, body: str, *, reply_to: str | None = None) -> WebhookDelivery:
        return await self._send("text", {"body": body}, reply_to=reply_to)

    async def send_image(
        self, content: bytes, *, mime_type: str = "image/jpeg", caption: str | None = None
    ) -> WebhookDelivery:
        extra = {"caption": caption} if caption is not None else {}
        return await self._send_media("image", content, mime_type, extra)

    async def send_voice_note(
        self, content: bytes, *, mime_type: str = "audio/ogg; codecs=opus"
    ) -> WebhookDelivery:
        return await self._send_media("audio", content, mime_type, {"voice": True})

    async def send_audio(self, content: bytes, *, mime_type: str = "audio/mpeg") -> WebhookDelivery:
        return await self._send_media("audio", content, mime_type, {"voice": False})

    async def send_document(
        self,
        content: bytes,
        *,
        filename: str,
        mime_type: str = "application/pdf",
        caption: str | None = None,
    ) -> WebhookDelivery:
        extra: dict[str, Any] = {"filename": filename}
        if caption is not None:
            extra["caption"] = caption
        return await self._send_media("document", content, mime_type, extra)

    async def send_location(
        self,
        latitude: float,
        longitude: float,
        *,
        name: str | None = None,
        address: str | None = None,
    ) -> WebhookDelivery:
        location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        if name is not None:
            location["name"] = name
        if address is not None:
            location["address"] = address
        return await self._send("location", location)

    async def react(self, wamid: str, emoji: str) -> WebhookDelivery:
        """React to a business message; an empty emoji removes the reaction."""
        return await self._send("reaction", {"message_id": wamid, "emoji": emoji})

    async def press_button(self, message: ReceivedMessage, button_id: str) -> WebhookDelivery:
        """Tap a reply button of an interactive message the business sent."""
        buttons = message.content.get("action", {}).get("buttons", [])
        titles = {b["reply"]["id"]: b["reply"]["title"] for b in buttons if "reply" in b}
        if button_id not in titles:
            raise ValueError(f"message {message.wamid} has no button {button_id!r}: {titles}")
        reply = {
            "type": "button_reply",
            "button_reply": {"id": button_id, "title": titles[button_id]},
        }
        return await self._send("interactive", reply, context=message.wamid)

    async def choose_row(self, message: ReceivedMessage, row_id: str) -> WebhookDelivery:
        """Pick a row of an interactive list the business sent."""
        sections: Sequence[Mapping[str, Any]] = message.content.get("action", {}).get("sections", [])
        rows = {row["id"]: row for section in sections for row in section.get("rows", [])}
        if row_id not in rows:
            raise ValueError(f"message {message.wamid} has no row {row_id!r}: {sorted(rows)}")
        chosen = {k: rows[row_id][k] for k in ("id", "title", "description") if k in rows[row_id]}
        reply = {"type": "list_reply", "list_reply": chosen}
        return await self._send("interactive", reply, context=message.wamid)

    async def send_ad_reply(self, body: str, *, source_id: str, headline: str = "Oferta") -> WebhookDelivery:
        """The first message of a Click-to-WhatsApp ad: a text with the ad's `referral`."""
        referral = {"source_url": f"https://fb.me/{source_id}", "source_id": source_id, "source_type": "ad",
                    "headline": headline, "body": headline, "media_type": "image",
                    "ctwa_clid": f"clid-{source_id}"}  # fmt: skip
        return await self._send("text", {"body": body}, referral=referral)

    async def submit_flow(self, message: ReceivedMessage, response: Mapping[str, Any]) -> WebhookDelivery:
        """Complete the WhatsApp Flow (form) of an interactive flow message: an nfm_reply."""
        reply = {"type": "nfm_reply",
                 "nfm_reply": {"name": "flow", "body": "Sent", "response_json": json.dumps(response)}}
        return await self._send("interactive", reply, context=message.wamid)

    async def tap_quick_reply(self, message: ReceivedMessage, *, payload: str, text: str) -> WebhookDelivery:
        """Tap a quick-reply button of a template (webhook type `button`)."""
        return await self._send("button", {"payload": payload, "text": text}, context=message.wamid)

    # -- the phone reports what happened to business messages --------------------------------

    async def report_status(self, wamid: str, status: str) -> WebhookDelivery:
        """Post a `sent`/`delivered`/`read`/`played` status for a message the business sent."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        message = self._own(wamid)
        value = webhooks.status_value(
            wamid=wamid,
            status=status,
            recipient_id=self.wa_id,
            timestamp=self._now(),
            template=message.type == "template",
            callback_data=message.callback_data,
        )
        self._reported.setdefault(wamid, set()).add(status)
        return await self.post(webhooks.notification(self.number, value), wamid=wamid)

    async def report_failure(self, wamid: str, code: int) -> WebhookDelivery:
        """Post a `failed` status with Meta's error object for `code` (e.g. 131047, 131026)."""
        message = self._own(wamid)
        value = webhooks.status_value(
            wamid=wamid,
            status="failed",
            recipient_id=self.wa_id,
            timestamp=self._now(),
            errors=[webhook_error(code)],
            callback_data=message.callback_data,
        )
        self._reported.setdefault(wamid, set()).add("failed")
        return await self.post(webhooks.notification(self.number, value), wamid=wamid)

    async def acknowledge(self, *, read: bool = False) -> list[WebhookDelivery]:
        """Report `sent` and `delivered` (and `read`) for every inbox message not yet reported."""
        wanted = ("sent", "delivered", "read") if read else ("sent", "delivered")
        deliveries = []
        for message in self.inbox:
            done = self._reported.get(message.wamid, set())
            if "failed" in done:
                continue
            for status in wanted:
                if status not in done:
                    deliveries.append(await self.report_status(message.wamid, status))
        return deliveries

    # -- transport -----------------------------------------------------------------------------

    async def post(self, payload: Mapping[str, Any], *, wamid: str = "") -> WebhookDelivery:
        """Sign and POST any webhook body, as Meta would."""
        body = webhooks.encode(payload)
        signature = sign(body, self._sim.config.app_secret)
        response = await self._http.post(
            self._url,
            content=body,
            headers={
                "Content-Type": "application/json",
                HEADER: signature,
                "User-Agent": "zapbase-simulator (local stand-in, not Meta)",
            },
        )
        _logger.debug("webhook %s → %s", wamid or "payload", response.status_code)
        return WebhookDelivery(
            payload=payload,
            body=body,
            signature=signature,
            status_code=response.status_code,
            wamid=wamid,
        )

    async def _send(
        self,
        kind: str,
        content: Mapping[str, Any],
        *,
        context: str | None = None,
        reply_to: str | None = None,
        referral: Mapping[str, Any] | None = None,
    ) -> WebhookDelivery:
        wamid = new_wamid()
        quoted = context or reply_to
        message = webhooks.inbound_message(
            wa_id=self.wa_id,
            wamid=wamid,
            timestamp=self._now(),
            kind=kind,
            content=content,
            context={"from": self.number.display_phone_number, "id": quoted} if quoted else None,
            user_id=self.user_id,
        )
        if referral is not None:
            message["referral"] = dict(referral)
        value = webhooks.inbound_value(
            wa_id=self.wa_id, name=self.name, message=message, user_id=self.user_id
        )
        self._sim.note_inbound(self.number.phone_number_id, self.wa_id)
        return await self.post(webhooks.notification(self.number, value), wamid=wamid)

    async def _send_media(
        self, kind: str, content: bytes, mime_type: str, extra: Mapping[str, Any]
    ) -> WebhookDelivery:
        media = self._sim.store_media(
            owner=self.number.phone_number_id,
            content=content,
            mime_type=mime_type,
            filename=extra.get("filename"),
        )
        obj = {"mime_type": mime_type, "sha256": media.sha256, "id": media.id, **extra}
        return await self._send(kind, obj)

    def _is_mine(self, message: ReceivedMessage) -> bool:
        return message.phone_number_id == self.number.phone_number_id and (
            message.wa_id == self.wa_id or (self.user_id is not None and message.user_id == self.user_id)
        )

    def _own(self, wamid: str) -> ReceivedMessage:
        message = self._sim.find(wamid)
        if message is None or not self._is_mine(message):
            raise ValueError(f"{wamid} was not sent to {self.wa_id}")
        return message

    def _now(self) -> int:
        return int(self._sim.clock())
