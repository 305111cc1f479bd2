"""Templates in SQL: checked before Meta sees them, rendered per contact, synced per WABA."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from campaigns_db.campaign_support import (
    AGENT,
    NUMBER,
    OWNER,
    PROMO,
    PROMO_VARIABLES,
    TENANT,
    WABA_ID,
    contacts,
    template,
)
from support import Db

CREATE = "select * from public.create_message_template(%s, %s, 'MARKETING', %s::jsonb)"


def create(db: Db, components: list[dict[str, Any]], name: str = "nova_oferta", user: str = OWNER) -> Any:
    with db.as_user(user) as s:
        return s.one(CREATE, (NUMBER, name, json.dumps(components)))


def body(text: str, example: list[str] | None = None) -> dict[str, Any]:
    comp: dict[str, Any] = {"type": "BODY", "text": text}
    if example is not None:
        comp["example"] = {"body_text": [example]}
    return comp


@pytest.mark.parametrize(
    ("components", "problem"),
    [
        ([], "non-empty array"),
        ([{"type": "FOOTER", "text": "só rodapé"}], "needs a BODY"),
        ([body("x" * 1025)], "1 to 1024 characters"),
        ([body("Olá {{1}} e {{3}}", ["a", "b"])], "numbered 1 to 2 without gaps"),
        ([body("Olá {{1}}")], "one example per variable"),
        ([body("Olá {{nome}}", ["a"])], "positional variables"),
        ([body("Oi"), {"type": "HEADER", "format": "GIF"}], "HEADER.format"),
        ([body("Oi"), {"type": "HEADER", "format": "IMAGE"}], "example.header_handle"),
        (
            [
                body("Oi"),
                {
                    "type": "HEADER",
                    "format": "TEXT",
                    "text": "{{1}} {{2}}",
                    "example": {"header_text": ["a", "b"]},
                },
            ],
            "one variable at most",
        ),
        ([body("Oi"), {"type": "FOOTER", "text": "Oi {{1}}"}], "FOOTER.text takes no variables"),
        (
            [body("Oi"), {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "q"}] * 11}],
            "1 to 10 buttons",
        ),
        (
            [body("Oi"), {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "x" * 26}]}],
            "1 to 25",
        ),
        (
            [
                body("Oi"),
                {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "a", "url": "https://a.com"}] * 3},
            ],
            "at most 2 URL buttons",
        ),
        (
            [
                body("Oi"),
                {
                    "type": "BUTTONS",
                    "buttons": [{"type": "PHONE_NUMBER", "text": "Ligar", "phone_number": "+5511999990000"}]
                    * 2,
                },
            ],
            "at most 1 PHONE_NUMBER",
        ),
        (
            [
                body("Oi"),
                {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "a", "url": "https://a.com/{{1}}"}]},
            ],
            "URL button: give one example",
        ),
        ([body("Oi"), body("Oi de novo")], "one BODY component at most"),
    ],
)
def test_create_refuses_what_meta_would_refuse(
    db: Db, components: list[dict[str, Any]], problem: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=problem):
        create(db, components)
    assert db.value("select count(*) from public.message_templates where name = 'nova_oferta'") == 0


def test_a_valid_template_waits_for_the_worker_and_agents_cannot_create(db: Db) -> None:
    row = create(db, PROMO)
    assert (row["status"], row["sync_status"], row["waba_id"]) == ("PENDING", "pending_create", WABA_ID)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        create(db, PROMO, name="outra", user=AGENT)
    with db.as_service() as s:
        claimed = s.all("select * from public.templates_claim_pushes()")
    assert [(c["name"], c["action"], c["access_token"]) for c in claimed] == [
        ("nova_oferta", "create", "zapbase-simulator-token")
    ]
    with db.as_service() as s:
        assert s.all("select * from public.templates_claim_pushes()") == []  # claimed once
        s.all("select public.templates_record_push(%s, '1234567890', 'PENDING')", (row["id"],))
    assert db.sql(
        "select sync_status, meta_template_id from public.message_templates where id = %s", (row["id"],)
    ) == [{"sync_status": "synced", "meta_template_id": "1234567890"}]


def test_delete_goes_through_meta_and_leaves_the_row_deleted(db: Db) -> None:
    template_id = template(db)
    with db.as_user(OWNER) as s:
        assert (
            s.one("select * from public.delete_message_template(%s)", (template_id,))["sync_status"]
            == "pending_delete"
        )
    with db.as_service() as s:
        assert [c["action"] for c in s.all("select * from public.templates_claim_pushes()")] == ["delete"]
        s.all("select public.templates_record_push(%s)", (template_id,))
    assert db.sql("select status, is_active from public.message_templates where id = %s", (template_id,)) == [
        {"status": "DELETED", "is_active": False}
    ]


def test_render_fills_each_contact_and_reports_what_is_missing(db: Db) -> None:
    template_id = template(db)
    ana, bia = contacts(db, 2)
    db.sql(
        "update public.contacts set name = 'Ana Paula Souza',"
        ' attributes = \'{"city": "Santos", "code": "A1"}\''
        " where id = %s",
        (ana,),
    )
    db.sql("update public.contacts set name = 'Bia', attributes = '{}' where id = %s", (bia,))
    with db.as_user(AGENT) as s:  # any member previews
        shown = s.value(
            "select public.preview_template(%s, %s, %s::jsonb)",
            (template_id, ana, json.dumps(PROMO_VARIABLES)),
        )
        other = s.value(
            "select public.preview_template(%s, %s, %s::jsonb)",
            (template_id, bia, json.dumps(PROMO_VARIABLES)),
        )
    assert shown["text"] == (
        "Oferta para Ana\n\nOlá Ana, em Santos o frete é grátis!\n\nResponda SAIR para não receber mais"
    )
    assert shown["missing"] == []
    assert shown["message"]["template"]["components"] == [
        {"type": "header", "parameters": [{"type": "text", "text": "Ana"}]},
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Ana"},
                {"type": "text", "text": "Santos"},
                {"type": "text", "text": "grátis"},
            ],
        },
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "A1"}]},
    ]
    assert "em sua cidade" in other["text"]  # the default
    assert other["missing"] == ["buttons.1"]


def test_named_parameters_and_values_meta_would_refuse(db: Db) -> None:
    template_id = template(
        db,
        "boas_vindas",
        [
            {
                "type": "BODY",
                "text": "Oi {{nome}}! Seu plano: {{plano}}.",
                "example": {
                    "body_text_named_params": [
                        {"param_name": "nome", "example": "Ana"},
                        {"param_name": "plano", "example": "Ouro"},
                    ]
                },
            }
        ],
    )
    db.sql("update public.message_templates set parameter_format = 'named' where id = %s", (template_id,))
    (ana,) = contacts(db, 1)
    with db.as_user(OWNER) as s:
        shown = s.value(
            "select public.preview_template(%s, %s, %s::jsonb)",
            (
                template_id,
                ana,
                json.dumps(
                    {"body": {"nome": {"value": "Ana\n\tMaria"}, "plano": {"value": "Ouro      Plus"}}}
                ),
            ),
        )
    assert shown["text"] == "Oi Ana Maria! Seu plano: Ouro Plus."
    assert shown["message"]["template"]["components"][0]["parameters"][0] == {
        "type": "text",
        "text": "Ana Maria",
        "parameter_name": "nome",
    }


def test_preview_is_refused_outside_the_tenant(db: Db) -> None:
    template_id = template(db)
    (ana,) = contacts(db, 1)
    outsider = db.create_user()
    with pytest.raises(psycopg.errors.NoDataFound), db.as_user(outsider) as s:
        s.all("select public.preview_template(%s, %s)", (template_id, ana))


def test_sync_applies_every_template_and_records_errors(db: Db) -> None:
    template(db, "antigo")
    template(db, "removido_na_meta")
    with db.as_user(OWNER) as s:
        assert s.value("select public.request_template_sync(%s)", (TENANT,)) == 1
    with db.as_service() as s:
        claimed = s.all("select * from public.templates_claim_syncs()")
        assert [(c["waba_id"], c["access_token"]) for c in claimed] == [(WABA_ID, "zapbase-simulator-token")]
        listed = [
            {
                "id": "111",
                "name": "antigo",
                "language": "pt_BR",
                "category": "MARKETING",
                "status": "PAUSED",
                "components": PROMO,
                "quality_score": {"score": "RED"},
                "rejected_reason": "NONE",
            },
            {
                "id": "222",
                "name": "novo",
                "language": "pt_BR",
                "category": "UTILITY",
                "status": "REJECTED",
                "components": [{"type": "BODY", "text": "Oi"}],
                "rejected_reason": "INVALID_FORMAT",
                "parameter_format": "POSITIONAL",
            },
        ]
        assert (
            s.value(
                "select public.templates_apply_sync(%s, %s, %s::jsonb)", (TENANT, WABA_ID, json.dumps(listed))
            )
            == 2
        )
    rows = {
        r["name"]: r
        for r in db.sql(
            "select name, status, quality_score, rejection_reason, meta_template_id, is_active"
            " from public.message_templates where tenant_id = %s",
            (TENANT,),
        )
    }
    assert rows["antigo"]["status"] == "PAUSED" and rows["antigo"]["quality_score"] == "RED"
    assert rows["novo"]["rejection_reason"] == "INVALID_FORMAT"
    assert rows["removido_na_meta"]["status"] == "DELETED" and not rows["removido_na_meta"]["is_active"]
    assert db.sql("select status, template_count, error from public.template_syncs") == [
        {"status": "succeeded", "template_count": 2, "error": None}
    ]
    with db.as_service() as s:
        s.all("select public.templates_apply_sync(%s, %s, null, '[190] token expired')", (TENANT, WABA_ID))
    with db.as_user(AGENT) as s:  # members see the sync state
        assert s.all("select status, error from public.template_syncs") == [
            {"status": "failed", "error": "[190] token expired"}
        ]
