"""Text-to-speech providers over HTTP (OpenAI, ElevenLabs) and what every provider shares.

Each provider turns arguments into a complete `SpeechSpec` (`spec_for`), renders a spec
into `Audio` (`render`), and does both at once (`synthesize`). `speak` puts the tenant's
cache in front: the key is computed from the very spec that would be sent.

WhatsApp voice notes must be OGG/Opus, so every provider defaults to it: OpenAI
`response_format: "opus"`, ElevenLabs `opus_48000_64`; `zapbase.tts.espeak`, the offline
voice, encodes with ffmpeg or opusenc. HTTP errors map through `zapbase.ai.errors.classify`;
ElevenLabs' `quota_exceeded` (sent with a 401) becomes `SpendLimitExceeded`.

Docs: https://platform.openai.com/docs/api-reference/audio/createSpeech,
https://elevenlabs.io/docs/api-reference/text-to-speech/convert
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, TypedDict, Unpack
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from zapbase.ai.errors import (
    BadRequest,
    ProviderError,
    ServerError,
    SpendLimitExceeded,
    classify,
    openai_error,
    retry_after_from_headers,
    transport_error,
)
from zapbase.settings import PROVIDER_TIMEOUT_S
from zapbase.tts.cache_key import SpeechSpec, VoiceSetting, normalize_speech_text, speech_cache_key

__all__ = [
    "OGG_OPUS",
    "Audio",
    "BaseSpeechProvider",
    "ElevenLabsSpeech",
    "OpenAISpeech",
    "Speech",
    "SpeechCache",
    "SpeechOptions",
    "SpeechProvider",
    "ogg_opus_duration",
    "speak",
]

_logger = logging.getLogger(__name__)

#: MIME type WhatsApp accepts for voice notes.
OGG_OPUS = "audio/ogg"
OPENAI_MAX_CHARS = 4096
_OPENAI_MIME: Mapping[str, str] = MappingProxyType(
    {
        "opus": OGG_OPUS,
        "mp3": "audio/mpeg",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/L16",
    }
)


class SpeechOptions(TypedDict, total=False):
    language: str  # BCP 47, e.g. "pt-BR"
    instructions: str  # delivery hints; only models that read them (gpt-4o-mini-tts)
    speed: float  # 1.0 = normal


@dataclass(frozen=True, slots=True, kw_only=True)
class Audio:
    data: bytes
    mime: str
    duration_s: float | None
    characters: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Speech:
    """What `speak` returns: on a hit, `spec.characters` is the saving to record."""

    audio: Audio
    spec: SpeechSpec
    cache_key: str
    cached: bool


class SpeechProvider(Protocol):
    @property
    def name(self) -> str: ...

    async def synthesize(
        self, text: str, voice: str | None = None, **options: Unpack[SpeechOptions]
    ) -> Audio: ...

    def spec_for(
        self, text: str, voice: str | None = None, **options: Unpack[SpeechOptions]
    ) -> SpeechSpec: ...

    async def render(self, spec: SpeechSpec) -> Audio: ...


class SpeechCache(Protocol):
    """Storage behind `speak`, scoped to one tenant (the SQL `tts_cache` table)."""

    async def get(self, key: str) -> Audio | None: ...

    async def put(self, key: str, spec: SpeechSpec, audio: Audio) -> None: ...


async def speak(
    provider: SpeechProvider,
    text: str,
    voice: str | None = None,
    *,
    cache: SpeechCache | None = None,
    **options: Unpack[SpeechOptions],
) -> Speech:
    """Audio for `text`, from the cache when the same spec was rendered before."""
    spec = provider.spec_for(text, voice, **options)
    key = speech_cache_key(spec)
    if cache is not None and (hit := await cache.get(key)) is not None:
        return Speech(audio=hit, spec=spec, cache_key=key, cached=True)
    audio = await provider.render(spec)
    if cache is not None:
        await cache.put(key, spec, audio)
    return Speech(audio=audio, spec=spec, cache_key=key, cached=False)


def ogg_opus_duration(data: bytes) -> float | None:
    """Seconds of an Ogg Opus stream: last page's granule position minus pre-skip."""
    head = data.find(b"OpusHead")
    last = data.rfind(b"OggS")
    if not data.startswith(b"OggS") or head < 0 or last < 0 or len(data) < last + 14:
        return None
    pre_skip = int.from_bytes(data[head + 10 : head + 12], "little")
    granule = int.from_bytes(data[last + 6 : last + 14], "little", signed=True)
    return max(0.0, (granule - pre_skip) / 48_000) if granule >= 0 else None


# --- HTTP providers -------------------------------------------------------------------


class _ElevenDetail(BaseModel):
    status: str | None = None
    message: str = ""


class _ElevenErrorBody(BaseModel):
    detail: _ElevenDetail | str | list[object]


class BaseSpeechProvider(ABC):
    """`synthesize` on top of a subclass's `spec_for` and `render`."""

    @abstractmethod
    def spec_for(
        self, text: str, voice: str | None = None, **options: Unpack[SpeechOptions]
    ) -> SpeechSpec: ...

    @abstractmethod
    async def render(self, spec: SpeechSpec) -> Audio: ...

    async def synthesize(
        self, text: str, voice: str | None = None, **options: Unpack[SpeechOptions]
    ) -> Audio:
        """`render(spec_for(...))`, for callers that keep no cache."""
        return await self.render(self.spec_for(text, voice, **options))


class _HttpSpeech(BaseSpeechProvider):
    """Shared request/response handling of the HTTP providers."""

    def __init__(self, *, name: str, client: httpx.AsyncClient, base_url: str, timeout: float) -> None:
        self._name = name
        self._http = client
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout

    @property
    def name(self) -> str:
        return self._name

    async def _post(
        self,
        path: str,
        spec: SpeechSpec,
        *,
        headers: Mapping[str, str],
        body: Mapping[str, object],
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.post(
                self._base_url + path, headers=headers, params=params, json=body, timeout=self._timeout
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, provider=self._name, model=spec.model) from exc
        if response.status_code >= 400:
            error = self._error(response, spec.model)
            _logger.warning("tts %s %s on %s: %s", self._name, response.status_code, spec.model, error.code)
            raise error
        if not response.content:
            raise ServerError("empty audio body", provider=self._name, model=spec.model)
        return response

    @abstractmethod
    def _error(self, response: httpx.Response, model: str) -> ProviderError: ...

    def _audio(self, data: bytes, spec: SpeechSpec, mime: str) -> Audio:
        duration = ogg_opus_duration(data) if mime == OGG_OPUS else None
        return Audio(data=data, mime=mime, duration_s=duration, characters=spec.characters)


class OpenAISpeech(_HttpSpeech):
    """OpenAI `POST {base_url}/v1/audio/speech` (tts-1 by default, Ogg Opus out).

    Parameters:
        api_key: bearer token (from Vault).
        client: injected httpx client, closed by its owner.
        voice: default voice ("alloy", "nova", ...).
        response_format: "opus" (Ogg Opus, for WhatsApp), "mp3", "wav", ...
    """

    def __init__(
        self,
        *,
        api_key: str,
        client: httpx.AsyncClient,
        base_url: str = "https://api.openai.com",
        model: str = "tts-1",
        voice: str = "alloy",
        response_format: str = "opus",
        name: str = "openai",
        timeout: float = PROVIDER_TIMEOUT_S,
    ) -> None:
        super().__init__(name=name, client=client, base_url=base_url, timeout=timeout)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._model = model
        self._voice = voice
        self._format = response_format

    def spec_for(self, text: str, voice: str | None = None, **options: Unpack[SpeechOptions]) -> SpeechSpec:
        # OpenAI has no language parameter (it reads the text); the key still keeps it.
        return SpeechSpec(
            provider=self._name,
            model=self._model,
            voice=voice or self._voice,
            text=text,
            output_format=self._format,
            **options,
        )

    async def render(self, spec: SpeechSpec) -> Audio:
        text = normalize_speech_text(spec.text)
        if len(text) > OPENAI_MAX_CHARS:
            raise BadRequest(
                f"text has {len(text)} characters; OpenAI TTS takes at most {OPENAI_MAX_CHARS}",
                provider=self._name,
                model=spec.model,
            )
        body: dict[str, object] = {
            "model": spec.model,
            "input": text,
            "voice": spec.voice,
            "response_format": spec.output_format,
            "speed": spec.speed,
        }
        if spec.instructions:  # only gpt-4o-mini-tts reads it; tts-1 must not receive it
            body["instructions"] = normalize_speech_text(spec.instructions)
        response = await self._post("/v1/audio/speech", spec, headers=self._headers, body=body)
        mime = _OPENAI_MIME.get(spec.output_format, "application/octet-stream")
        return self._audio(response.content, spec, mime)

    def _error(self, response: httpx.Response, model: str) -> ProviderError:
        return openai_error(response, provider=self._name, model=model)


class ElevenLabsSpeech(_HttpSpeech):
    """ElevenLabs `POST {base_url}/v1/text-to-speech/{voice_id}?output_format=...`.

    Parameters:
        api_key: sent as `xi-api-key`.
        voice: default voice id.
        output_format: "opus_48000_64" (Ogg Opus), "mp3_44100_128", "pcm_24000", ...
        voice_settings: stability, similarity_boost, style, use_speaker_boost.
    """

    # Only these models accept `language_code`; the others answer 400 when it is sent.
    _LANGUAGE_MODELS = frozenset({"eleven_turbo_v2_5", "eleven_flash_v2_5"})

    def __init__(
        self,
        *,
        api_key: str,
        client: httpx.AsyncClient,
        voice: str,
        base_url: str = "https://api.elevenlabs.io",
        model: str = "eleven_multilingual_v2",
        output_format: str = "opus_48000_64",
        voice_settings: Mapping[str, VoiceSetting] | None = None,
        name: str = "elevenlabs",
        timeout: float = PROVIDER_TIMEOUT_S,
    ) -> None:
        super().__init__(name=name, client=client, base_url=base_url, timeout=timeout)
        self._headers = {"xi-api-key": api_key}
        self._model = model
        self._voice = voice
        self._format = output_format
        self._settings = dict(voice_settings or {"stability": 0.5, "similarity_boost": 0.75})

    def spec_for(self, text: str, voice: str | None = None, **options: Unpack[SpeechOptions]) -> SpeechSpec:
        return SpeechSpec(
            provider=self._name,
            model=self._model,
            voice=voice or self._voice,
            text=text,
            output_format=self._format,
            **options,
            voice_settings=self._settings,
        )

    async def render(self, spec: SpeechSpec) -> Audio:
        settings: dict[str, VoiceSetting] = dict(spec.voice_settings)
        if spec.speed != 1.0:
            settings["speed"] = spec.speed
        body: dict[str, object] = {
            "text": normalize_speech_text(spec.text),
            "model_id": spec.model,
            "voice_settings": settings,
        }
        if spec.language and spec.model in self._LANGUAGE_MODELS:
            body["language_code"] = spec.language.split("-")[0].lower()
        response = await self._post(
            f"/v1/text-to-speech/{quote(spec.voice, safe='')}",
            spec,
            headers=self._headers,
            params={"output_format": spec.output_format},
            body=body,
        )
        return self._audio(response.content, spec, _eleven_mime(spec.output_format))

    def _error(self, response: httpx.Response, model: str) -> ProviderError:
        status, message = None, response.text[:500]
        try:
            detail = _ElevenErrorBody.model_validate_json(response.content).detail
        except ValidationError:
            detail = None
        if isinstance(detail, _ElevenDetail):
            status, message = detail.status, detail.message or message
        if status == "quota_exceeded":
            return SpendLimitExceeded(
                message,
                provider=self._name,
                model=model,
                status_code=response.status_code,
                error_type=status,
            )
        return classify(
            provider=self._name,
            model=model,
            status_code=response.status_code,
            message=message,
            error_code=status,
            retry_after=retry_after_from_headers(response.headers),
            request_id=response.headers.get("request-id"),
        )


def _eleven_mime(output_format: str) -> str:
    codec = output_format.split("_")[0]
    return {"opus": OGG_OPUS, "mp3": "audio/mpeg", "pcm": "audio/L16", "ulaw": "audio/basic"}.get(
        codec, "application/octet-stream"
    )
