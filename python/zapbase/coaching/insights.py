"""AI insights of a sales conversation (WhatsApp or call): the prompt and the judgement of the
model's answer (the worker's insight loop does the I/O).

    coaching_insight_claim ─► prompt (lines with their ids, methodology, playbook)
        ─► gateway.chat (feature coaching_insight; budget, usage log, fallback as any call)
        ─► refused / failed / only the offline answerer ─► status with the reason
        ─► answer ─► `Analysis` (pydantic) ─invalid─► invalid_output with the first error
                                           └valid──► coaching_insight_record (SQL keeps only
                                                     evidence that quotes a line of the conversation)

An answer that does not parse is never stored as zeros: it is a status. The response cache
is off for this feature: a transcript is analysed once (the database dedupes by hash), and a
cached bad answer would come back on the next request.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zapbase.ai.chain import LOCAL_LINK
from zapbase.ai.types import AttemptStatus, ChatMessage, ChatRequest, GatewayResponse

__all__ = [
    "FEATURE",
    "PROMPT_VERSION",
    "Analysis",
    "InsightJob",
    "Verdict",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What to record: a status of `coaching_insight_record`, the answer when done."""

    status: Literal["done", "refused", "failed", "invalid_output"]
    result: Mapping[str, Any] | None = None
    model: str | None = None
    error: str | None = None


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def judge(response: GatewayResponse, dimensions: Sequence[str]) -> Verdict:
    """The gateway's response as an outcome: refusals and failures as statuses, an answer
    validated against `Analysis` (and the methodology's dimensions) before anything is stored."""
    if response.refusal is not None:
        return Verdict(status="refused", error=f"AI budget refused: {response.refusal.reason} "
                                               f"{response.refusal.message}".strip())  # fmt: skip
    result = response.result
    if result is None:
        code = response.error.code if response.error is not None else "unknown"
        return Verdict(status="failed", error=f"AI providers failed: {code}")
    if result.provider == LOCAL_LINK.provider:
        return Verdict(status="failed", error="no AI model available: only the offline answerer replied")
    model = next((a.link.gateway_id for a in response.attempts
                  if a.status in (AttemptStatus.OK, AttemptStatus.CACHED)), result.model)  # fmt: skip
    try:
        analysis = Analysis.model_validate(json.loads(_FENCE.sub("", result.text.strip())))
    except json.JSONDecodeError as exc:
        return Verdict(status="invalid_output", model=model, error=f"the answer is not JSON: {exc}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return Verdict(status="invalid_output", model=model, error=f"{where}: {first['msg']}")
    unknown = sorted(set(analysis.methodology) - set(dimensions))
    if unknown:
        return Verdict(status="invalid_output", model=model,
                       error=f"methodology: unknown dimensions {', '.join(unknown)}")  # fmt: skip
    return Verdict(status="done", result=analysis.model_dump(mode="json"), model=model)
