"""The TTS cache key covers everything that changes the audio, and nothing else."""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import Any

import pytest

from zapbase.tts import SpeechSpec, normalize_speech_text, speech_cache_key

BASE = SpeechSpec(
    provider="openai",
    model="tts-1",
    voice="alloy",
    text="Olá! Seu pedido foi enviado.",
    output_format="opus",
    language="pt-BR",
)


def _key(**changes: Any) -> str:
    return speech_cache_key(dataclasses.replace(BASE, **changes))


def test_cache_key_is_stable_across_releases() -> None:
    # Stored in tts_cache: changing the canonical form must bump KEY_VERSION.
    assert speech_cache_key(BASE) == "42ce5c5f8a711eb3511794ed3d0d49f941e62001d652ecdadcbe06af78937a90"


def test_cache_key_ignores_whitespace_differences() -> None:
    assert _key(text="  Olá!   Seu pedido\n\tfoi enviado.\n") == speech_cache_key(BASE)
    assert _key(text="Olá!\u00a0Seu pedido foi enviado.") == speech_cache_key(BASE)


def test_cache_key_ignores_unicode_composition() -> None:
    decomposed = unicodedata.normalize("NFD", BASE.text)
    assert decomposed != BASE.text

    assert _key(text=decomposed) == speech_cache_key(BASE)


def test_cache_key_ignores_case_of_case_insensitive_fields_and_number_form() -> None:
    assert _key(language="PT-br", provider="OpenAI", output_format="OPUS", speed=1) == speech_cache_key(BASE)
    assert _key(voice_settings={"stability": 1}) == _key(voice_settings={"stability": 1.0})


@pytest.mark.parametrize(
    "change",
    [
        {"provider": "elevenlabs"},
        {"model": "tts-1-hd"},
        {"voice": "nova"},
        {"voice": "Alloy"},  # voice ids are case-sensitive
        {"voice_version": "2"},
        {"text": "Olá! Seu pedido foi entregue."},
        {"text": "olá! seu pedido foi enviado."},
        {"language": "pt-PT"},
        {"instructions": "Fale com calma."},
        {"speed": 1.25},
        {"voice_settings": {"stability": 0.5}},
        {"output_format": "mp3"},
    ],
)
def test_cache_key_changes_with_anything_that_changes_audio(change: dict[str, Any]) -> None:
    assert _key(**change) != speech_cache_key(BASE)


def test_cache_key_distinguishes_number_from_string_settings() -> None:
    assert _key(voice_settings={"style": 1.0}) != _key(voice_settings={"style": "1.0"})


def test_cache_key_rejects_non_finite_speed() -> None:
    with pytest.raises(ValueError, match="finite"):
        _key(speed=float("nan"))


def test_speech_spec_counts_normalized_characters() -> None:
    assert normalize_speech_text("  Oi,\n\n tudo   bem? ") == "Oi, tudo bem?"
    assert dataclasses.replace(BASE, text="  Oi,\n\n tudo   bem? ").characters == 13
