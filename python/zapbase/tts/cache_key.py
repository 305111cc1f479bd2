"""The TTS cache key: sha256 over everything that changes the audio, and nothing else.

Covered: provider, model, voice and its version, the text after Unicode NFC and
whitespace normalisation (runs collapsed, ends stripped), language, instructions,
speed, voice settings, output format. So "Olá,  tudo bem?\\n" and "Olá, tudo bem?"
share audio, while another voice, voice version or format never does. Numbers are
canonicalised (1 == 1.0) and identifiers that are case-insensitive are lowercased.

The key does not include the tenant: the `tts_cache` table scopes rows by tenant_id.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["KEY_VERSION", "SpeechSpec", "VoiceSetting", "normalize_speech_text", "speech_cache_key"]

#: Bump when the canonical form changes: old keys then simply stop matching.
KEY_VERSION = 1

VoiceSetting = str | int | float | bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechSpec:
    """One synthesis request, complete: what a provider receives and what the cache keys on.

    Providers build it with `spec_for(...)`, filling in their model, output format and
    voice settings, so the key always reflects what was actually sent.
    """

    provider: str
    model: str
    voice: str
    text: str
    output_format: str
    voice_version: str = ""
    language: str = ""
    instructions: str = ""
    speed: float = 1.0
    voice_settings: Mapping[str, VoiceSetting] = field(default_factory=dict)

    @property
    def characters(self) -> int:
        """Characters billed: providers count the text they receive, normalised here."""
        return len(normalize_speech_text(self.text))


def normalize_speech_text(text: str) -> str:
    """NFC, then every run of whitespace to one space, then stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def speech_cache_key(spec: SpeechSpec) -> str:
    """Hex sha256 of the canonical JSON of `spec`."""
    canonical = {
        "v": KEY_VERSION,
        "provider": spec.provider.strip().lower(),
        "model": spec.model.strip(),
        # Voice ids are case-sensitive (ElevenLabs ids are mixed-case): kept as given.
        "voice": spec.voice.strip(),
        "voice_version": spec.voice_version.strip(),
        "text": normalize_speech_text(spec.text),
        "language": spec.language.strip().lower(),
        "instructions": normalize_speech_text(spec.instructions),
        "speed": _number(spec.speed),
        "voice_settings": {k: _setting(v) for k, v in sorted(spec.voice_settings.items())},
        "output_format": spec.output_format.strip().lower(),
    }
    encoded = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def _number(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    # 1 and 1.0 serialise alike as floats; adding 0.0 turns -0.0 into 0.0.
    return float(value) + 0.0


def _setting(value: VoiceSetting) -> VoiceSetting:
    return value if isinstance(value, bool | str) else _number(value)
