"""Sales coaching: the AI insight of a conversation (prompt, answer schema, judgement).

Playbooks, calls, OKRs and alerts live in SQL (supabase/migrations/*_coaching.sql); the
worker's insight loop (`zapbase.worker.insights`) claims analyses and calls the gateway.
"""

from __future__ import annotations

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
