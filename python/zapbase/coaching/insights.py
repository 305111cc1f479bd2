"""AI insights of a sales conversation (WhatsApp or call): the prompt and the judgement of the
model's answer (the worker's insight loop does the I/O).

    coaching_insight_claim ─► prompt (lines with their ids, methodology, playbook)
        ─► gateway.complete_json against `answer_schema` (feature coaching_insight; budget,
           usage log, fallback as any call; an invalid answer asked again once, no cache)
        ─► refused / failed / invalid_output ─► status with the reason
        ─► valid ─► `Analysis` ─► coaching_insight_record (SQL keeps only evidence that quotes
                                  a line of the conversation)

An answer that does not parse is never stored as zeros: it is a status.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from zapbase.ai.structured import JsonResult
from zapbase.ai.types import AttemptStatus, ChatMessage, ChatRequest

__all__ = [
    "FEATURE",
    "PROMPT_VERSION",
    "Analysis",
    "InsightJob",
    "Verdict",
    "answer_schema",
    "build_request",
    "judge",
]

FEATURE = "coaching_insight"
PROMPT_VERSION = "insight-v1"
_MAX_TOKENS = 2000

_SYSTEM = (
    "Você é um coach de vendas. Analise a conversa entre vendedor e cliente e responda SOMENTE com um "
    "objeto JSON, sem texto antes ou depois, no formato:\n"
    '{"summary": "resumo em até 5 frases", "sentiment": "positive" | "neutral" | "negative",\n'
    ' "methodology": {"<dimensão>": {"score": 0-10 ou null, "evidence": [{"message_id": "<id>", '
    '"quote": "trecho copiado literalmente da mensagem"}]}},\n'
    ' "playbook": [{"question": "<pergunta do playbook, copiada>", "covered": true | false, '
    '"evidence": [{"message_id": "<id>", "quote": "..."}]}],\n'
    ' "key_moments": [{"message_id": "<id>", "quote": "...", "note": "por que importa"}],\n'
    ' "suggested_actions": ["próxima ação"]}\n'
    "Regras: cada nota precisa de evidência, um trecho copiado literalmente de uma mensagem, com o id "
    "dessa mensagem; sem evidência, use score null e evidence []. Nunca invente ids nem trechos. "
    "Escreva resumo, notas e ações em português do Brasil, mesmo que a conversa esteja em outra língua."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class InsightJob:
    """A claimed analysis (a row of `coaching_insight_claim`)."""

    insight_id: uuid.UUID
    tenant_id: uuid.UUID
    attempt: int
    conversation_id: uuid.UUID | None
    call_id: uuid.UUID | None
    methodology: str
    dimensions: tuple[str, ...]
    playbook: Mapping[str, Any] | None
    lines: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> InsightJob:
        return cls(**{**row, "dimensions": tuple(row["dimensions"]), "lines": tuple(row["lines"])})


class _Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_id: str = Field(min_length=1, max_length=100)
    quote: str = Field(min_length=1, max_length=1000)


class _Dimension(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: float | None = Field(default=None, ge=0, le=10)
    evidence: list[_Evidence] = Field(default_factory=list, max_length=10)


class _Question(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=500)
    covered: bool
    evidence: list[_Evidence] = Field(default_factory=list, max_length=10)


class _Moment(_Evidence):
    note: str = Field(min_length=1, max_length=500)


class Analysis(BaseModel):
    """The model's answer, as the prompt asks for it. Extra keys, a sentiment outside the three,
    a score outside 0-10 or a dimension the methodology does not have make it invalid."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(min_length=1, max_length=4000)
    sentiment: Literal["positive", "neutral", "negative"]
    methodology: dict[str, _Dimension]
    playbook: list[_Question] = Field(default_factory=list, max_length=300)
    key_moments: list[_Moment] = Field(default_factory=list, max_length=20)
    suggested_actions: list[str] = Field(default_factory=list, max_length=10)


def build_request(job: InsightJob) -> ChatRequest:
    """The analysis prompt: the methodology's dimensions, the playbook's questions and every
    line of the conversation with the id the evidence must cite."""
    parts = [f"Metodologia: {job.methodology.upper()}. Dimensões: {', '.join(job.dimensions)}."]
    if job.playbook is not None:
        questions = [
            f"- [{section['title']}] {question}"
            for section in job.playbook["content"]["sections"]
            for question in section["questions"]
        ]
        parts.append(f'Playbook "{job.playbook["name"]}" — perguntas:\n' + "\n".join(questions))
    else:
        parts.append("Sem playbook: responda playbook como [].")
    transcript = "\n".join(
        f"[{line['id']}] {line['speaker'] or 'Participante'}: {line['text']}" for line in job.lines
    )
    parts.append(f"Conversa (cada linha começa com o id da mensagem):\n{transcript}")
    return ChatRequest(
        system=_SYSTEM,
        messages=(ChatMessage(role="user", content="\n\n".join(parts)),),
        max_tokens=_MAX_TOKENS,
        temperature=0.0,
        feature=FEATURE,
        tenant_id=str(job.tenant_id),
        conversation_id=str(job.conversation_id) if job.conversation_id else None,
        request_id=f"insight:{job.insight_id}",
    )


@functools.cache
def answer_schema(dimensions: tuple[str, ...]) -> Mapping[str, Any]:
    """The JSON schema the gateway holds the answer to: `Analysis`, with exactly the
    methodology's dimensions allowed under `methodology` (built once per methodology: pydantic
    takes milliseconds to write it; callers must not change it)."""
    schema = Analysis.model_json_schema()
    dimension = schema["properties"]["methodology"]["additionalProperties"]
    schema["properties"]["methodology"] = {
        "type": "object",
        "properties": {name: dimension for name in dimensions},
        "additionalProperties": False,
    }
    return schema


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What to record: a status of `coaching_insight_record` / `coaching_draft_record` (done,
    refused, failed, invalid_output), the answer when done."""

    status: str
    result: Mapping[str, Any] | None = None
    model: str | None = None
    error: str | None = None


def judge(answer: JsonResult, shape: type[BaseModel]) -> Verdict:
    """The gateway's JSON answer as an outcome: refusals, failures and answers outside the
    schema (after the gateway's one retry) are statuses; a valid one is parsed as `shape`
    (`Analysis`, or a draft's `PlaybookContent`)."""
    answered = (a for r in answer.responses[-1:] for a in r.attempts
                if a.status in (AttemptStatus.OK, AttemptStatus.CACHED))  # fmt: skip
    model = next((a.link.gateway_id for a in answered), None)
    if not answer.ok:
        return Verdict(status=answer.status.value, model=model, error=answer.message)
    parsed = shape.model_validate(answer.value)
    return Verdict(status="done", result=parsed.model_dump(mode="json"), model=model)
