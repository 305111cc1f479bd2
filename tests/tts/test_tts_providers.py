"""OpenAI and ElevenLabs speech clients against the local stand-ins, and `speak` + cache."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from zapbase.ai.errors import (
    AuthFailed,
    BadRequest,
    ConnectionFailed,
    ProviderTimeout,
    RateLimited,
    ServerError,
    SpendLimitExceeded,
)
from zapbase.standins.ai import FaultKind
from zapbase.standins.speech import ZERO_LATENCY, Latency, SpeechStandIn, ogg_opus_silence
from zapbase.tts import Audio, ElevenLabsSpeech, OpenAISpeech, SpeechSpec, ogg_opus_duration, speak

OPENAI_KEY = "sk-standin"
ELEVEN_KEY = "xi-standin"
VOICE_ID = "21m00Tcm4TlvDq8ikWAM"
TEXT = "Olá! Seu pedido   já foi enviado."


@pytest.fixture
def standin() -> SpeechStandIn:
    return SpeechStandIn(latency=ZERO_LATENCY)


@pytest.fixture
async def http(standin: SpeechStandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=standin.app)) as client:
        yield client


def _openai(http: httpx.AsyncClient, *, api_key: str = OPENAI_KEY, model: str = "tts-1") -> OpenAISpeech:
    return OpenAISpeech(api_key=api_key, client=http, base_url="http://tts.standin", model=model)


def _eleven(
    http: httpx.AsyncClient, *, api_key: str = ELEVEN_KEY, model: str = "eleven_multilingual_v2"
) -> ElevenLabsSpeech:
    return ElevenLabsSpeech(
        api_key=api_key, client=http, voice=VOICE_ID, base_url="http://tts.standin", model=model
    )


class MemoryCache:
    """A SpeechCache for one test (the real one is the tts_cache table)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[SpeechSpec, Audio]] = {}

    async def get(self, key: str) -> Audio | None:
        row = self.rows.get(key)
        return row[1] if row else None

    async def put(self, key: str, spec: SpeechSpec, audio: Audio) -> None:
        self.rows[key] = (spec, audio)


# --- OpenAI ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_openai_speech_sends_bearer_and_opus_request(
    standin: SpeechStandIn, http: httpx.AsyncClient
) -> None:
    audio = await _openai(http).synthesize(TEXT, "nova", language="pt-BR", speed=1.25)

    [request] = standin.requests
    assert (request.api, request.path) == ("openai", "/v1/audio/speech")
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.body == {
        "model": "tts-1",
        "input": "Olá! Seu pedido já foi enviado.",
        "voice": "nova",
        "response_format": "opus",
        "speed": 1.25,
    }
    assert audio.mime == "audio/ogg" and audio.data.startswith(b"OggS")
    assert audio.characters == 31
    assert audio.duration_s == pytest.approx(31 / 15 / 1.25, abs=0.02)


@pytest.mark.anyio
async def test_openai_speech_sends_instructions_only_when_given(
    standin: SpeechStandIn, http: httpx.AsyncClient
) -> None:
    provider = _openai(http, model="gpt-4o-mini-tts")
    await provider.synthesize("Oi", instructions="Tom  simpático")

    assert standin.requests[0].body["instructions"] == "Tom simpático"


@pytest.mark.anyio
async def test_openai_speech_refuses_text_over_4096_characters(
    standin: SpeechStandIn, http: httpx.AsyncClient
) -> None:
    with pytest.raises(BadRequest, match="4096"):
        await _openai(http).synthesize("a" * 4097)
    assert standin.requests == []


@pytest.mark.anyio
async def test_openai_speech_maps_wrong_key_to_auth_failed(http: httpx.AsyncClient) -> None:
    with pytest.raises(AuthFailed):
        await _openai(http, api_key="sk-wrong").synthesize(TEXT)


# --- ElevenLabs -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_elevenlabs_speech_sends_key_header_and_output_format(
    standin: SpeechStandIn, http: httpx.AsyncClient
) -> None:
    audio = await _eleven(http).synthesize(TEXT, language="pt-BR", speed=1.1)

    [request] = standin.requests
    assert (request.api, request.path) == ("elevenlabs", f"/v1/text-to-speech/{VOICE_ID}")
    assert request.headers["xi-api-key"] == ELEVEN_KEY
    assert "authorization" not in request.headers
    assert request.query == {"output_format": "opus_48000_64"}
    assert request.body == {
        "text": "Olá! Seu pedido já foi enviado.",
        "model_id": "eleven_multilingual_v2",
        "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.1},
    }
    assert audio.mime == "audio/ogg" and audio.duration_s == pytest.approx(31 / 15 / 1.1, abs=0.02)


@pytest.mark.anyio
async def test_elevenlabs_speech_sends_language_code_to_models_that_take_it(
    standin: SpeechStandIn, http: httpx.AsyncClient
) -> None:
    await _eleven(http, model="eleven_flash_v2_5").synthesize(TEXT, language="pt-BR")

    assert standin.requests[0].body["language_code"] == "pt"
    assert "speed" not in standin.requests[0].body["voice_settings"]


@pytest.mark.anyio
async def test_elevenlabs_speech_maps_missing_text_to_bad_request(http: httpx.AsyncClient) -> None:
    with pytest.raises(BadRequest):
        await _eleven(http).synthesize("   ")


# --- errors common to both ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (FaultKind.RATE_LIMIT, RateLimited),
        (FaultKind.SPEND_LIMIT, SpendLimitExceeded),
        (FaultKind.SERVER_ERROR, ServerError),
    ],
)
@pytest.mark.parametrize("provider", ["openai", "elevenlabs"])
async def test_speech_providers_map_faults(fault: FaultKind, error: type[Exception], provider: str) -> None:
    standin = SpeechStandIn(latency=ZERO_LATENCY, faults=[fault])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=standin.app)) as http:
        client = _openai(http) if provider == "openai" else _eleven(http)
        with pytest.raises(error) as caught:
            await client.synthesize(TEXT)
        assert caught.value.provider == provider  # type: ignore[attr-defined]
        await client.synthesize(TEXT)  # the fault was used up


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "error"),
    [(httpx.ConnectError("refused"), ConnectionFailed), (httpx.ReadTimeout("slow"), ProviderTimeout)],
)
async def test_speech_providers_map_transport_failures(exc: Exception, error: type[Exception]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as http:
        for client in (_openai(http), _eleven(http)):
            with pytest.raises(error):
                await client.synthesize(TEXT)


# --- speak + cache --------------------------------------------------------------------


@pytest.mark.anyio
async def test_speak_renders_once_then_serves_from_cache(
    standin: SpeechStandIn, http: httpx.AsyncClient
) -> None:
    cache = MemoryCache()
    provider = _openai(http)

    first = await speak(provider, "Seu pedido foi enviado.", cache=cache, language="pt-BR")
    second = await speak(provider, "  Seu pedido\nfoi enviado. ", cache=cache, language="pt-BR")
    other_voice = await speak(provider, "Seu pedido foi enviado.", "nova", cache=cache, language="pt-BR")

    assert (first.cached, second.cached, other_voice.cached) == (False, True, False)
    assert second.cache_key == first.cache_key != other_voice.cache_key
    assert second.audio == first.audio
    assert second.spec.characters == 23  # the saving to record on a hit
    assert len(standin.requests) == 2


# --- the stand-in itself --------------------------------------------------------------


def test_standin_silence_is_valid_ogg_opus(tmp_path: Path) -> None:
    data = ogg_opus_silence(2.5)

    assert ogg_opus_duration(data) == pytest.approx(2.5)
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        pytest.skip("ffmpeg not installed: checked the granule position only")
    path = str(tmp_path / "silence.ogg")
    Path(path).write_bytes(data)
    probe = [ffprobe, "-v", "error", "-show_entries", "stream=codec_name,duration", "-of", "csv=p=0", path]
    codec, duration = (
        subprocess.run(probe, capture_output=True, check=True, text=True).stdout.strip().split(",")
    )
    decode = subprocess.run(
        [ffmpeg, "-v", "error", "-i", path, "-f", "null", "-"], capture_output=True, check=True
    )

    assert codec == "opus" and float(duration) == pytest.approx(2.5, abs=0.01)
    assert decode.stderr == b""  # a bad page CRC or packet would be reported here


@pytest.mark.anyio
async def test_standin_waits_for_configured_latency() -> None:
    standin = SpeechStandIn(latency=Latency(first_byte_s=0.05, per_char_s=0.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=standin.app)) as http:
        started = time.perf_counter()
        await _openai(http).synthesize("Oi")

    assert time.perf_counter() - started >= 0.05
