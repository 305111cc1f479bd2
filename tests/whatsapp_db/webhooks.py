"""Webhook bodies shaped like Meta's (reference: whatsapp-cloud-api.md §4), for the ingest tests."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from support import Db

PHONE_NUMBER_ID = "106540352242922"  # seed: Loja Demo's number
WABA_ID = "102290129340398"
TENANT = "00000000-0000-4000-b000-000000000001"
NUMBER = "00000000-0000-4000-9000-000000000001"
OWNER = "00000000-0000-4000-a000-000000000001"
AGENT = "00000000-0000-4000-a000-000000000002"

_ids = itertools.count(1)
Json = dict[str, Any]


def wamid() -> str:
    return f"wamid.HBgNNTUxMTk{next(_ids):012d}AA=="


def now(offset: float = 0) -> str:
    return str(int(time.time() + offset))


def msg(type_: str, obj: Any, sender: str = "5511988887777", *, at: float = 0, **extra: Any) -> Json:
    """One inbound message of `type_` with its object, `at` seconds from now."""
    return {"from": sender, "id": wamid(), "timestamp": now(at), "type": type_, type_: obj, **extra}


def text(body: str, sender: str = "5511988887777", *, at: float = 0, **extra: Any) -> Json:
    return msg("text", {"body": body}, sender, at=at, **extra)


def profile(wa_id: str, name: str, **extra: Any) -> Json:
    return {"profile": {"name": name}, "wa_id": wa_id, **extra}


def status(wamid_: str, status_: str, *, at: float = 0, **extra: Any) -> Json:
    return {"id": wamid_, "status": status_, "timestamp": now(at), "recipient_id": "5511988887777", **extra}


def change(*, messages: list[Json] | None = None, statuses: list[Json] | None = None,
           contacts: list[Json] | None = None, errors: list[Json] | None = None,
           phone_number_id: str = PHONE_NUMBER_ID, field: str = "messages") -> Json:
    value: Json = {"messaging_product": "whatsapp",
                   "metadata": {"display_phone_number": "5511999990000", "phone_number_id": phone_number_id}}
    if contacts is not None:
        value["contacts"] = contacts
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    if errors is not None:
        value["errors"] = errors
    return {"field": field, "value": value}


def body(*changes: Json, entry_id: str = WABA_ID) -> Json:
    return {"object": "whatsapp_business_account", "entry": [{"id": entry_id, "changes": list(changes)}]}


INGEST_SQL = "select public.whatsapp_ingest(%s::jsonb, %s)"


def ingest(db: Db, payload: Json | str, signer: str | None = PHONE_NUMBER_ID) -> Json:
    """whatsapp_ingest as the worker calls it: the service role, one request, signed by
    `signer`'s app (the demo number's own by default; None: the platform's app)."""
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    with db.as_service() as s:
        result: Json = s.value(INGEST_SQL, (raw, signer))
    return result


def message_row(db: Db, wamid_: str) -> Json:
    rows = db.sql("select * from public.messages where wamid = %s", (wamid_,))
    assert len(rows) == 1, f"expected one message {wamid_}, found {len(rows)}"
    return rows[0]
