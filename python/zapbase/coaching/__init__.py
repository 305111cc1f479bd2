"""Sales coaching: the AI insight of a conversation (prompt, answer schema, judgement), AI
drafts of playbooks and the transcription of call recordings.

Playbooks, calls, OKRs and alerts live in SQL (supabase/migrations/*_coaching.sql); the
worker's coaching loop (`zapbase.worker.insights`) claims transcriptions, drafts and analyses
and calls the gateway.
"""

from __future__ import annotations

from zapbase.coaching.calls import (
    MAX_RECORDING_BYTES,
    TRANSCRIPTION_FEATURE,
    TranscriptionJob,
    too_large,
    transcript_lines,
)
from zapbase.coaching.insights import (
    FEATURE,
    PROMPT_VERSION,
    Analysis,
    InsightJob,
    Verdict,
    answer_schema,
    build_request,
    judge,
)
from zapbase.coaching.playbooks import (
    DRAFT_FEATURE,
    DRAFT_PROMPT_VERSION,
    DraftJob,
    PlaybookContent,
    build_draft_request,
    content_schema,
)

__all__ = [
    "DRAFT_FEATURE",
    "DRAFT_PROMPT_VERSION",
    "FEATURE",
    "MAX_RECORDING_BYTES",
    "PROMPT_VERSION",
    "TRANSCRIPTION_FEATURE",
    "Analysis",
    "DraftJob",
    "InsightJob",
    "PlaybookContent",
    "TranscriptionJob",
    "Verdict",
    "answer_schema",
    "build_draft_request",
    "build_request",
    "content_schema",
    "judge",
    "too_large",
    "transcript_lines",
]
