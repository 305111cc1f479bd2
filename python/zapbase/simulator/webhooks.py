"""Webhook bodies (field `messages`) in the structure Meta documents, and their encoding.

Shape: `{object: "whatsapp_business_account", entry: [{id: WABA, changes: [{field: "messages",
value: {messaging_product, metadata: {display_phone_number, phone_number_id}, contacts?,
messages? | statuses?}}]}]}` (webhooks/reference/messages, status; 2026 revisions).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from zapbase.simulator.state import SimNumber

__all__ = [
    "encode",
    "inbound_message",
    "inbound_value",
    "notification",
    "status_value",
]


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON with non-ASCII as `\\uXXXX` and `/` as `\\/`, the escaped form Meta signs;
    a receiver that re-serialises the parsed JSON computes a different signature."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    # "/" only occurs inside JSON strings, where "\/" is a valid escape of it.
    return text.replace("/", "\\/").encode("ascii")


def notification(number: SimNumber, value: Mapping[str, Any]) -> dict[str, Any]:
    """Wrap one change `value` for `number` in the entry/changes envelope."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": number.waba_id,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": number.display_phone_number,
                                "phone_number_id": number.phone_number_id,
                            },
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def inbound_message(
    *,
    wa_id: str,
    wamid: str,
    timestamp: int,
    kind: str,
    content: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """One `messages[]` item: from, id, timestamp (a string), type and the `<type>` object."""
    message: dict[str, Any] = {}
    if context is not None:
        message["context"] = dict(context)
    message["from"] = wa_id
    if user_id is not None:
        message["from_user_id"] = user_id
    message.update({"id": wamid, "timestamp": str(timestamp), "type": kind, kind: dict(content)})
    return message


def inbound_value(
    *, wa_id: str, name: str, message: Mapping[str, Any], user_id: str | None = None
) -> dict[str, Any]:
    contact: dict[str, Any] = {"profile": {"name": name}, "wa_id": wa_id}
    if user_id is not None:
        contact["user_id"] = user_id
    return {"contacts": [contact], "messages": [dict(message)]}


def status_value(
    *,
    wamid: str,
    status: str,
    recipient_id: str,
    timestamp: int,
    template: bool = False,
    errors: Sequence[Mapping[str, Any]] = (),
    callback_data: str | None = None,
) -> dict[str, Any]:
    """One `statuses[]` item. v24.0+ webhooks omit `conversation`; `pricing` rides on
    `sent` and `delivered` (Meta: on sent and on one of delivered/read); the send's
    `biz_opaque_callback_data`, when it had one, comes back unchanged."""
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient_id,
    }
    if callback_data is not None:
        item["biz_opaque_callback_data"] = callback_data
    if status in ("sent", "delivered"):
        item["pricing"] = (
            {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}
            if template
            else {
                "billable": False,
                "pricing_model": "PMP",
                "category": "service",
                "type": "free_customer_service",
            }
        )
    if errors:
        item["errors"] = [dict(error) for error in errors]
    return {"statuses": [item]}
