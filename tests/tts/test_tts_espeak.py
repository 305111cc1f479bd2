"""The offline espeak-ng voice; skipped where espeak-ng or an Opus encoder is missing."""

from __future__ import annotations

import pytest

from zapbase.ai.errors import BadRequest
from zapbase.tts import EspeakSpeech, speech_cache_key

PROVIDER = EspeakSpeech.detect()
pytestmark = pytest.mark.skipif(PROVIDER is None, reason="espeak-ng with ffmpeg or opusenc not on PATH")


@pytest.fixture
def espeak() -> EspeakSpeech:
    assert PROVIDER is not None
    return PROVIDER


@pytest.mark.anyio
async def test_espeak_speaks_portuguese_as_ogg_opus(espeak: EspeakSpeech) -> None:
    audio = await espeak.synthesize("Olá! O prazo de entrega é de três dias úteis.")

    assert audio.mime == "audio/ogg"
    assert audio.data.startswith(b"OggS") and b"OpusHead" in audio.data[:64]
    assert audio.duration_s is not None and 1.5 < audio.duration_s < 8
    assert audio.characters == 45


@pytest.mark.anyio
async def test_espeak_is_deterministic(espeak: EspeakSpeech) -> None:
    first = await espeak.synthesize("Seu pedido foi enviado.")
    second = await espeak.synthesize("Seu   pedido foi enviado.")

    assert first.data == second.data


def test_espeak_spec_keys_on_engine_version_and_voice(espeak: EspeakSpeech) -> None:
    spec = espeak.spec_for("Oi", language="pt-BR")

    assert spec.voice == "pt-br" and spec.voice_version
    assert speech_cache_key(spec) != speech_cache_key(espeak.spec_for("Oi", "pt", language="pt-BR"))


@pytest.mark.anyio
async def test_espeak_rejects_unknown_voice(espeak: EspeakSpeech) -> None:
    with pytest.raises(BadRequest, match="espeak-ng failed"):
        await espeak.synthesize("Oi", "xx-nao-existe")
