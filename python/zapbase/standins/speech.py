"""Local stand-ins for the OpenAI and ElevenLabs speech APIs, for tests and the offline demo.

One FastAPI app answers both wire formats:

- `POST /v1/audio/speech` (OpenAI: `Authorization: Bearer`, JSON `model`, `input`,
  `voice`, `response_format`, `speed`);
- `POST /v1/text-to-speech/{voice_id}?output_format=...` (ElevenLabs: `xi-api-key`,
  JSON `text`, `model_id`, `voice_settings`).

It returns real, playable silence: Ogg Opus (for "opus" / "opus_48000_*") whose length
follows the text (~15 characters a second, divided by the speed), or WAV / raw PCM.
Other formats answer 400. Errors use each provider's own body shape, and `faults`
scripts the next answers (`FaultKind.RATE_LIMIT`, `SPEND_LIMIT`, `SERVER_ERROR`, as for
the AI stand-ins).

    standin = SpeechStandIn(latency=ZERO_LATENCY)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=standin.app))
"""

from __future__ import annotations

import io
import struct
import wave
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from zapbase.standins.ai import FaultKind

__all__ = [
    "REALISTIC_LATENCY",
    "ZERO_LATENCY",
    "Latency",
    "RecordedRequest",
    "SpeechStandIn",
    "ogg_opus_silence",
]


CHARS_PER_SECOND = 15.0
OPENAI_MAX_CHARS = 4096
ELEVENLABS_MAX_CHARS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    first_byte_s: float
    per_char_s: float


#: Roughly what tts-1 shows for short replies.
REALISTIC_LATENCY = Latency(first_byte_s=0.35, per_char_s=0.002)
ZERO_LATENCY = Latency(first_byte_s=0.0, per_char_s=0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    api: Literal["openai", "elevenlabs"]
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]


class SpeechStandIn:
    """The stand-in server; `requests` lists what it received, oldest first."""

    def __init__(
        self,
        *,
        openai_api_key: str = "sk-standin",
        elevenlabs_api_key: str = "xi-standin",
        latency: Latency = REALISTIC_LATENCY,
        faults: Iterable[FaultKind] = (),
    ) -> None:
        self.requests: list[RecordedRequest] = []
        self._openai_key = openai_api_key
        self._eleven_key = elevenlabs_api_key
        self._latency = latency
        self._faults: deque[FaultKind] = deque(faults)
        self.app = FastAPI(title="Zapbase TTS stand-in", docs_url=None, redoc_url=None)
        self.app.add_api_route("/v1/audio/speech", self._openai, methods=["POST"])
        self.app.add_api_route("/v1/text-to-speech/{voice_id}", self._elevenlabs, methods=["POST"])

    async def _openai(self, request: Request) -> Response:
        body = await self._record(request, "openai")
        if request.headers.get("authorization") != f"Bearer {self._openai_key}":
            return _openai_error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        if fault := self._next_fault():
            return _openai_fault(fault)
        text, voice, fmt = body.get("input"), body.get("voice"), body.get("response_format", "mp3")
        if not isinstance(text, str) or not text or not isinstance(voice, str) or not body.get("model"):
            return _openai_error(400, "'input', 'voice' and 'model' are required.", "invalid_request_error")
        if len(text) > OPENAI_MAX_CHARS:
            return _openai_error(
                400, f"'input' is too long: {len(text)} > {OPENAI_MAX_CHARS}", "invalid_request_error"
            )
        speed = float(body.get("speed", 1.0))
        seconds = _seconds(text, speed)
        await self._wait(text)
        if fmt == "opus":
            return Response(ogg_opus_silence(seconds), media_type="audio/ogg")
        if fmt in ("wav", "pcm"):
            pcm = bytes(2 * round(24_000 * seconds))
            data = _wav(pcm, 24_000) if fmt == "wav" else pcm
            return Response(data, media_type="audio/wav" if fmt == "wav" else "audio/pcm")
        return _openai_error(400, f"the stand-in does not produce {fmt!r}", "invalid_request_error")

    async def _elevenlabs(self, voice_id: str, request: Request) -> Response:
        body = await self._record(request, "elevenlabs")
        if request.headers.get("xi-api-key") != self._eleven_key:
            return _eleven_error(401, "invalid_api_key", "Invalid API key")
        if fault := self._next_fault():
            return _eleven_fault(fault)
        text = body.get("text")
        if not isinstance(text, str) or not text:
            return JSONResponse(
                {"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "missing"}]},
                status_code=422,
            )
        if len(text) > ELEVENLABS_MAX_CHARS:
            return _eleven_error(400, "max_character_limit_exceeded", "Text is too long.")
        fmt = request.query_params.get("output_format", "mp3_44100_128")
        settings = body.get("voice_settings")
        speed = settings.get("speed", 1.0) if isinstance(settings, dict) else 1.0
        seconds = _seconds(text, float(speed))
        await self._wait(text)
        codec, _, rest = fmt.partition("_")
        if codec == "opus":
            return Response(ogg_opus_silence(seconds), media_type="audio/ogg")
        if codec == "pcm" and rest.isdigit():
            return Response(bytes(2 * round(int(rest) * seconds)), media_type="audio/pcm")
        return _eleven_error(400, "invalid_output_format", f"the stand-in does not produce {fmt!r}")

    async def _record(self, request: Request, api: Literal["openai", "elevenlabs"]) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        self.requests.append(
            RecordedRequest(
                api=api,
                path=request.url.path,
                headers=dict(request.headers),
                query=dict(request.query_params),
                body=body,
            )
        )
        return body

    def _next_fault(self) -> FaultKind | None:
        return self._faults.popleft() if self._faults else None

    async def _wait(self, text: str) -> None:
        delay = self._latency.first_byte_s + self._latency.per_char_s * len(text)
        if delay > 0:
            await anyio.sleep(delay)


def _seconds(text: str, speed: float) -> float:
    return max(0.2, len(text) / CHARS_PER_SECOND / max(speed, 0.25))


def _openai_error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}, status_code=status
    )


def _eleven_error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": kind, "message": message}}, status_code=status)


def _openai_fault(fault: FaultKind) -> JSONResponse:
    if fault is FaultKind.RATE_LIMIT:
        return _openai_error(
            429, "Rate limit reached for requests on tts-1.", "requests", "rate_limit_exceeded"
        )
    if fault is FaultKind.SPEND_LIMIT:
        message = "You exceeded your current quota, please check your plan and billing details."
        return _openai_error(429, message, "insufficient_quota", "insufficient_quota")
    return _openai_error(500, "The server had an error while processing your request.", "server_error")


def _eleven_fault(fault: FaultKind) -> JSONResponse:
    if fault is FaultKind.RATE_LIMIT:
        message = "Too many concurrent requests for your subscription."
        return _eleven_error(429, "too_many_concurrent_requests", message)
    if fault is FaultKind.SPEND_LIMIT:
        # ElevenLabs reports an exhausted character quota with a 401, not a 402 or 429.
        message = "This request exceeds your quota. You have 12 credits remaining."
        return _eleven_error(401, "quota_exceeded", message)
    return _eleven_error(500, "internal_server_error", "An internal server error occurred.")


# --- audio ----------------------------------------------------------------------------

_PRE_SKIP = 312  # samples at 48 kHz, as libopus writes
_FRAME_SAMPLES = 960  # 20 ms at 48 kHz
# A CELT-only, fullband, 20 ms mono packet that decodes to silence.
_SILENT_PACKET = b"\xf8\xff\xfe"


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def _ogg_page(packets: list[bytes], *, granule: int, sequence: int, flags: int) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x5A50, sequence, 0, len(lacing))
    page = bytearray(header + lacing + b"".join(packets))
    struct.pack_into("<I", page, 22, _ogg_crc(bytes(page)))
    return bytes(page)


def ogg_opus_silence(seconds: float) -> bytes:
    """A valid Ogg Opus stream (RFC 7845) of `seconds` of mono silence."""
    samples = max(_FRAME_SAMPLES, round(seconds * 48_000))
    # Enough 20 ms frames to cover the pre-skip too; the last granule trims the excess.
    frames = -(-(samples + _PRE_SKIP) // _FRAME_SAMPLES)
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, _PRE_SKIP, 48_000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 7) + b"zapbase" + struct.pack("<I", 0)
    pages = [
        _ogg_page([head], granule=0, sequence=0, flags=0x02),
        _ogg_page([tags], granule=0, sequence=1, flags=0x00),
    ]
    per_page = 50  # one second of audio per page
    for first in range(0, frames, per_page):
        count = min(per_page, frames - first)
        last = first + count >= frames
        granule = _PRE_SKIP + samples if last else (first + count) * _FRAME_SAMPLES
        pages.append(
            _ogg_page(
                [_SILENT_PACKET] * count, granule=granule, sequence=len(pages), flags=0x04 if last else 0
            )
        )
    return b"".join(pages)


def _wav(pcm: bytes, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()
