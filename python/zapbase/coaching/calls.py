"""Call recordings: the transcription job and the shape of its transcript (the worker's
coaching loop does the I/O).

    a call uploaded with audio_storage_path ─► coaching_transcription_claim ─► the audio from
    storage ─► `Listener.hear` (feature call_transcription, budget per audio minute, usage row)
    ─► coaching_transcription_record (the call's lines and insight follow as for a text upload)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_RECORDING_BYTES", "TRANSCRIPTION_FEATURE", "TranscriptionJob", "too_large",
           "transcript_lines"]

TRANSCRIPTION_FEATURE = "call_transcription"
# OpenAI's transcription endpoint takes files up to 25 MB: a bigger one fails there after the
# upload, so it is refused here, before the budget is held, with what to do about it.
MAX_RECORDING_BYTES = 25 * 1024 * 1024

_SPEAKER = "Participante"
# The end of a sentence: where a transcript without line breaks is cut into lines.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptionJob:
    """A claimed transcription (a row of `coaching_transcription_claim`)."""

    call_id: uuid.UUID
    tenant_id: uuid.UUID
    attempt: int
    audio_storage_path: str
    audio_mime_type: str | None
    duration_seconds: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TranscriptionJob:
        return cls(**row)

    @property
    def request_id(self) -> str:
        """What the usage rows of this call's transcriptions carry."""
        return f"transcription:{self.call_id}"


def too_large(size: int) -> str | None:
    """Why a recording of `size` bytes cannot be transcribed, or None when it can."""
    if size <= MAX_RECORDING_BYTES:
        return None
    return (f"the recording has {size / 2**20:.1f} MB and transcription takes up to"
            f" {MAX_RECORDING_BYTES // 2**20} MB: upload it shorter or compressed"
            " (e.g. mono MP3 at 32 kbit/s)")


def transcript_lines(text: str) -> str:
    """One sentence per line: a transcription comes as one block, and each line of a call is
    what an insight's evidence cites (a line is also cut at 20,000 characters). The speaker is
    not known: each line says so, or a colon inside a sentence would be read as one."""
    return "\n".join(
        f"{_SPEAKER}: {sentence.strip()}"
        for line in text.splitlines()
        for sentence in _SENTENCE_END.split(line)
        if sentence.strip()
    )
