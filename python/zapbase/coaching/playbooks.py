"""AI drafts of a playbook: the prompt, the content schema the answer is held to, and the job.

    request_playbook_draft ─► coaching_draft_claim ─► prompt (function, methodology, description)
        ─► gateway.complete_json against `content_schema` (feature playbook_draft; budget, usage
           log, fallback; an invalid answer asked again once)
        ─► coaching_draft_record: checked again by SQL (private.playbook_content_problem) and
           stored as a new draft playbook (is_ai_generated), or a status saying why not

`PlaybookContent` mirrors the SQL schema so the model is told exactly what the database
accepts: an answer the gateway validated is never refused by the table afterwards.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from zapbase.ai.types import ChatMessage, ChatRequest

__all__ = [
    "DRAFT_FEATURE",
    "DRAFT_PROMPT_VERSION",
    "DraftJob",
    "PlaybookContent",
    "build_draft_request",
    "content_schema",
]

DRAFT_FEATURE = "playbook_draft"
DRAFT_PROMPT_VERSION = "playbook-draft-v1"
_MAX_TOKENS = 4000

_FUNCTIONS = {"pre_sales": "pré-vendas (SDR)", "sales": "vendas (closer)", "cs": "sucesso do cliente (CS)"}

_SYSTEM = (
    "Você é um especialista em processos comerciais. Escreva um playbook de vendas em português do "
    "Brasil e responda SOMENTE com um objeto JSON, sem texto antes ou depois, no formato:\n"
    '{"sections": [{"title": "título da etapa", "questions": ["pergunta que o vendedor faz", ...]}, ...],\n'
    ' "objections": [{"objection": "objeção típica do cliente", "answer": "como responder"}, ...]}\n'
    "Regras: de 3 a 8 seções na ordem da conversa, cada uma com 2 a 6 perguntas abertas que cubram as "
    "dimensões da metodologia; de 3 a 8 objeções com respostas concretas. Títulos até 120 caracteres, "
    "perguntas até 500, objeções até 300, respostas até 2000. Nenhuma outra chave."
)

_Question = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=120)
    questions: list[_Question] = Field(min_length=1, max_length=30)


class _Objection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objection: str = Field(min_length=1, max_length=300)
    answer: str = Field(min_length=1, max_length=2000)


class PlaybookContent(BaseModel):
    """A playbook's content as private.playbook_content_problem accepts it (automations are
    configured by people, never drafted)."""

    model_config = ConfigDict(extra="forbid")
    sections: list[_Section] = Field(min_length=1, max_length=30)
    objections: list[_Objection] = Field(default_factory=list, max_length=50)


@dataclass(frozen=True, slots=True, kw_only=True)
class DraftJob:
    """A claimed draft (a row of `coaching_draft_claim`)."""

    draft_id: uuid.UUID
    tenant_id: uuid.UUID
    attempt: int
    name: str
    function: str
    methodology: str
    dimensions: tuple[str, ...]
    description: str
    team_name: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DraftJob:
        return cls(**{**row, "dimensions": tuple(row["dimensions"])})


def build_draft_request(job: DraftJob) -> ChatRequest:
    """The drafting prompt: who the playbook is for, the methodology's dimensions and the
    manager's description."""
    parts = [
        f'Playbook "{job.name}" para {_FUNCTIONS.get(job.function, job.function)}'
        + (f", equipe {job.team_name}." if job.team_name else "."),
        f"Metodologia: {job.methodology.upper()}. Dimensões a cobrir: {', '.join(job.dimensions)}.",
        f"Descrição do gestor:\n{job.description}",
    ]
    return ChatRequest(
        system=_SYSTEM,
        messages=(ChatMessage(role="user", content="\n\n".join(parts)),),
        max_tokens=_MAX_TOKENS,
        temperature=0.3,
        feature=DRAFT_FEATURE,
        tenant_id=str(job.tenant_id),
        request_id=f"playbook_draft:{job.draft_id}",
    )


@functools.cache
def content_schema() -> Mapping[str, Any]:
    """The JSON schema of `PlaybookContent` (built once; callers must not change it)."""
    return PlaybookContent.model_json_schema()
