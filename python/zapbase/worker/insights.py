"""The coaching loop: claims call recordings to transcribe, playbook drafts to write and
conversation analyses, and runs each through its tenant's AI budget (transcription priced per
audio minute; drafts and insights on the gateway: budget, usage log and fallback as any call),
then records the outcome, which the database checks again (a draft's content against the
playbook schema, an insight's evidence against the conversation).

A round transcribes first: a transcript queues its call's insight, analysed in the same round.

`NOTIFY zapbase_insights` (a call uploaded, an insight or draft requested, a transcription
retried) wakes it; it polls as a fallback, and work whose worker died returns to its queue
when its lease expires.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from zapbase.ai.errors import ProviderError
from zapbase.ai.types import ChatRequest, Refusal
from zapbase.bot.config import load_policy
from zapbase.bot.gateways import Gateways
from zapbase.bot.voice import Listener
from zapbase.coaching import (
    DRAFT_PROMPT_VERSION,
    PROMPT_VERSION,
    TRANSCRIPTION_FEATURE,
    Analysis,
    DraftJob,
    InsightJob,
    PlaybookContent,
    TranscriptionJob,
    answer_schema,
    build_draft_request,
    build_request,
    content_schema,
    judge,
    too_large,
    transcript_lines,
)
from zapbase.db.pool import Pool
from zapbase.storage import ObjectStore, StorageError
from zapbase.worker.loop import QueueLoop, record_outcome

__all__ = ["INSIGHTS_CHANNEL", "InsightLoop"]

_logger = logging.getLogger(__name__)

INSIGHTS_CHANNEL = "zapbase_insights"
_CLAIM = "select * from public.coaching_insight_claim(%s, %s, %s)"
_RECORD = "select public.coaching_insight_record(%s, %s, %s, %s::jsonb, %s, %s, %s) as status"
_CLAIM_DRAFTS = "select * from public.coaching_draft_claim(%s, %s, %s)"
_RECORD_DRAFT = "select public.coaching_draft_record(%s, %s, %s, %s::jsonb, %s, %s, %s) as status"
_CLAIM_TRANSCRIPTIONS = "select * from public.coaching_transcription_claim(%s, %s, %s)"
_RECORD_TRANSCRIPTION = "select public.coaching_transcription_record(%s, %s, %s, %s, %s, %s) as status"


@dataclass(frozen=True, slots=True)
class _JsonTask:
    """A kind of JSON answer the loop asks for: its schema's name, the shape it is judged as,
    the recorder and the prompt version stored with it."""

    name: str
    shape: type[BaseModel]
    record: str
    prompt_version: str


_INSIGHT = _JsonTask("conversation_insight", Analysis, _RECORD, PROMPT_VERSION)
_DRAFT = _JsonTask("playbook_content", PlaybookContent, _RECORD_DRAFT, DRAFT_PROMPT_VERSION)
# Recordings are long: a transcription holds its lease (and budget hold) longer than a chat call.
_TRANSCRIPTION_LEASE_S = 900


class InsightLoop(QueueLoop):
    """Claims coaching work and runs it, one item at a time: transcriptions, drafts, insights.

    **Parameters**

    * **pool** - service-role connections.
    * **gateways** - the AI gateway of each tenant (its own keys or the platform's).
    * **worker_id** - who holds the leases.
    * **listener** - transcribes call recordings (the voice notes' transcriber); None: a
      recording's transcription fails with the reason (and can be retried once one is configured).
    * **media** - where call recordings are stored (the message media store).
    * **batch_size** - drafts and analyses claimed per round (transcriptions: half, at least one).
    * **lease_seconds** - how long a claimed draft or analysis is ours (a crashed worker's returns
      after it).
    """

    def __init__(
        self,
        *,
        pool: Pool,
        gateways: Gateways,
        worker_id: str,
        listener: Listener | None = None,
        media: ObjectStore | None = None,
        batch_size: int = 4,
        lease_seconds: int = 300,
        poll_interval: float = 5.0,
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._gateways = gateways
        self._worker_id = worker_id
        self._listener = listener
        self._media = media
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds

    async def run_once(self) -> int:
        claimed = 0
        transcriptions = max(1, self._batch_size // 2)
        for row in await self._claim(_CLAIM_TRANSCRIPTIONS, transcriptions, _TRANSCRIPTION_LEASE_S):
            await self.transcribe(TranscriptionJob.from_row(row))
            claimed += 1
        for row in await self._claim(_CLAIM_DRAFTS, self._batch_size, self._lease_seconds):
            await self.draft(DraftJob.from_row(row))
            claimed += 1
        for row in await self._claim(_CLAIM, self._batch_size, self._lease_seconds):
            await self.analyse(InsightJob.from_row(row))
            claimed += 1
        return claimed

    async def _claim(self, query: str, batch_size: int, lease_seconds: int) -> Sequence[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return await (await conn.execute(query, (self._worker_id, batch_size, lease_seconds))).fetchall()

    async def analyse(self, job: InsightJob) -> str:
        """Run one claimed analysis and record its outcome; returns the stored status."""
        return await self._answer(_INSIGHT, job.insight_id, job.attempt, job.tenant_id, build_request(job),
                                  answer_schema(job.dimensions))  # fmt: skip

    async def draft(self, job: DraftJob) -> str:
        """Write one claimed playbook draft and record it; returns the stored status (done: a new
        draft playbook exists; invalid_output: nothing was stored)."""
        return await self._answer(_DRAFT, job.draft_id, job.attempt, job.tenant_id, build_draft_request(job),
                                  content_schema())  # fmt: skip

    async def _answer(
        self, task: _JsonTask, subject: uuid.UUID, attempt: int, tenant_id: uuid.UUID, request: ChatRequest,
        schema: Mapping[str, Any],
    ) -> str:  # fmt: skip
        """Ask the tenant's gateway for JSON of `schema`, judge it as the task's shape and record
        the outcome (the recorder checks it again); returns the stored status."""
        async with self._pool.connection() as conn:
            policy = await load_policy(conn, tenant_id, None)
            gateway = await self._gateways.for_tenant(conn, tenant_id)
        answer = await gateway.complete_json(request, policy, schema=schema, name=task.name)
        verdict = judge(answer, task.shape)
        if verdict.status != "done":
            _logger.warning("%s %s: %s (%s)", task.name, subject, verdict.status, verdict.error)
        params = (subject, attempt, verdict.status,
                  json.dumps(verdict.result) if verdict.result is not None else None,
                  verdict.model, task.prompt_version, verdict.error)  # fmt: skip
        row = await record_outcome(self._pool, task.record, params, within=self._lease_seconds)
        return str(row["status"]) if row else verdict.status

    async def transcribe(self, job: TranscriptionJob) -> str:
        """Transcribe one claimed recording and record the outcome; returns the stored status
        (done: the call's lines are written and its insight queued)."""
        status, transcript, error = await self._hear(job)
        if status != "done":
            _logger.warning("call %s transcription: %s (%s)", job.call_id, status, error)
        model = self._listener.gateway_id if self._listener is not None else None
        params = (job.call_id, job.attempt, status, transcript, model, error)
        row = await record_outcome(self._pool, _RECORD_TRANSCRIPTION, params, within=_TRANSCRIPTION_LEASE_S)
        return str(row["status"]) if row else status

    async def _hear(self, job: TranscriptionJob) -> tuple[str, str | None, str | None]:
        """(status, transcript, error) of one recording."""
        if self._listener is None or self._media is None:
            return "failed", None, "no transcription provider is configured (OPENAI_API_KEY)"
        try:
            audio = await self._media.get(job.audio_storage_path)
        except StorageError as exc:
            return "failed", None, f"audio not readable: {exc}"
        if (problem := too_large(len(audio))) is not None:
            return "failed", None, problem
        try:
            text = await self._listener.hear(
                tenant_id=job.tenant_id, audio=audio, mime=job.audio_mime_type or "audio/mpeg",
                feature=TRANSCRIPTION_FEATURE, request_id=job.request_id, seconds=job.duration_seconds,
            )  # fmt: skip
        except ProviderError as exc:
            return "failed", None, f"{exc.code}: {exc.message}"
        if isinstance(text, Refusal):
            return "refused", None, f"AI budget refused: {text.reason} {text.message}".strip()
        return "done", transcript_lines(text), None
