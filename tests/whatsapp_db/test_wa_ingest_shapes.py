"""whatsapp_ingest keeps its promise for odd shapes of every item kind: nothing raises, the
valid rest of the body lands, and what cannot be applied is kept with its reason."""

from __future__ import annotations

from typing import Any

import pytest
from webhooks import NUMBER, TENANT, body, change, ingest, message_row, text

from support import Db


@pytest.mark.parametrize("error", [{}, None, "rate limit", [1, 2], {"code": "9" * 200}, {"code": {"x": 1}},
                                   {"title": None, "message": 42, "error_data": "x"}])
def test_an_odd_account_error_never_loses_the_messages_beside_it(db: Db, error: Any) -> None:
    good = text("chegou mesmo assim")
    result = ingest(db, body(change(messages=[good], errors=[error])))
    assert result["messages"] == 1
    assert message_row(db, good["id"])["content"] == "chegou mesmo assim"
    number = db.sql("select last_error from public.whatsapp_numbers where id = %s", (NUMBER,))[0]
    assert number["last_error"]["errors"] == [error]
    alerts = db.sql("select title, dedupe_key from public.alerts where tenant_id = %s", (TENANT,))
    if isinstance(error, dict):
        assert len(alerts) == 1 and alerts[0]["title"].startswith("WhatsApp: ")
        assert len(alerts[0]["dedupe_key"]) <= 200
    else:  # nothing to alert about: the element itself is kept with the reason
        assert alerts == []
        event = db.sql("select status, quarantined from public.inbound_events")[0]
        assert event["status"] == "partial"
        assert event["quarantined"] == [{"item": error, "reason": "error is not an object"}]


def test_errors_that_are_not_a_list_are_kept_on_the_event(db: Db) -> None:
    payload = body(change(messages=[text("oi")]))
    payload["entry"][0]["changes"][0]["value"]["errors"] = {"code": 1}
    result = ingest(db, payload)
    assert result["messages"] == 1
    assert db.value("select count(*) from public.alerts") == 0


@pytest.mark.parametrize("value", [
    {"event": {"nested": True}, "message_template_id": ["1"], "reason": {"x": "y" * 5000}},
    {"event": "REJECTED", "message_template_name": None, "message_template_language": 7,
     "reason": "x" * 5000},
    {"event": None},
    {},
])
def test_odd_template_updates_are_stored_not_raised(db: Db, value: dict[str, Any]) -> None:
    update = change(field="message_template_status_update")
    update["value"] = value
    result = ingest(db, body(update, change(messages=[text("ainda chega")])))
    assert result["events"] == 2 and result["messages"] == 1


@pytest.mark.parametrize("value", [[1, 2], "texto", None, 7, {"metadata": "x"},
                                   {"metadata": {"phone_number_id": 5}}])
def test_odd_values_of_any_field_are_stored_not_raised(db: Db, value: Any) -> None:
    for field in ("messages", "account_update", "message_template_status_update", None, 12):
        result = ingest(db, body({"field": field, "value": value}, change(messages=[text("ok")])))
        assert result["messages"] == 1
