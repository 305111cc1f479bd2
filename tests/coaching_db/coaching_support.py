"""Shared arrangements of the coaching tests (the seed's demo tenant)."""

from __future__ import annotations

import json
from typing import Any

from support import Db

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
OWNER = "00000000-0000-4000-a000-000000000001"  # Ana, owner
AGENT = "00000000-0000-4000-a000-000000000002"  # Bruno, agent
OWNER_MEMBER = "00000000-0000-4000-c000-000000000001"
AGENT_MEMBER = "00000000-0000-4000-c000-000000000002"
TEAM = "00000000-0000-4000-d000-000000000001"

CONTENT: dict[str, Any] = {
    "sections": [
        {"title": "Descoberta", "questions": ["Qual seu principal desafio?", "Quem decide a compra?"]},
        {"title": "Fechamento", "questions": ["Podemos agendar a assinatura?"]},
    ],
    "objections": [{"objection": "Muito caro", "answer": "Vamos falar sobre ROI."}],
}

TRANSCRIPT = (
    "Vendedor: Olá Carla, qual seu principal desafio hoje?\n"
    "Cliente: Perdemos muitos pedidos porque o atendimento demora dois dias.\n"
    "\n"
    "Vendedor: Quem decide a compra na sua empresa?\n"
    "Cliente: Eu decido junto com o diretor financeiro, até o fim do mês.\n"
    "Vendedor: Podemos agendar a assinatura para sexta?\n"
)


def playbook(
    db: Db,
    *,
    status: str = "active",
    team: str | None = None,
    content: Any = None,
    parent: str | None = None,
    name: str = "Playbook de vendas",
) -> dict[str, Any]:
    with db.as_user(OWNER) as s:
        return s.one(
            "insert into public.playbooks (tenant_id, team_id, name, function, methodology, status, content,"
            " parent_id) values (%s, %s, %s, 'sales', 'spiced', %s, %s, %s) returning *",
            (TENANT, team, name, status, json.dumps(CONTENT if content is None else content), parent),
        )


def call(
    db: Db, transcript: str = TRANSCRIPT, *, as_user: str = AGENT, seller: str = AGENT_MEMBER
) -> dict[str, Any]:
    with db.as_user(as_user) as s:
        return s.one(
            "insert into public.coaching_calls (tenant_id, seller_id, title, occurred_at, duration_seconds,"
            " transcript) values (%s, %s, 'Demo com Carla', now() - interval '1 hour', 1260, %s) returning *",
            (TENANT, seller, transcript),
        )


def run_job(db: Db, name: str, as_of: str = "now()") -> int:
    with db.as_service() as s:
        return int(s.value(f"select private.run_job(%s, {as_of})", (name,)))
