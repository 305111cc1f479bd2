"""Voice notes in and out: transcription held to the tenant's budget, spoken replies.

`Listener` transcribes through an OpenAI-compatible API: `ai_reserve` before the call
(estimated seconds, so a tenant over budget sends nothing to the provider), `ai_settle`
after it with the seconds billed (api type transcription, priced per audio minute). Voice
notes go through `transcribe`; other audio (coaching call recordings) through `hear`.

`Speaker` turns a reply into a WhatsApp voice note through `SpeechService` (TTS cache,
budget) and uploads it once per number: the media id is remembered on the cache row and
sent again while Meta keeps it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from zapbase.ai.errors import ProviderError
from zapbase.ai.types import Refusal, Transcriber, TranscriptionRequest
from zapbase.bot.config import Bot
from zapbase.db.pool import Connect, transaction
from zapbase.tts.providers import ogg_opus_duration
from zapbase.tts.service import CallContext, SpeechRefused, SpeechService
from zapbase.whatsapp.api import GraphAPI
from zapbase.whatsapp.errors import MessageValidationError, WhatsAppError
from zapbase.whatsapp.inbound import InboundMessage

__all__ = ["TRANSCRIPTION_FEATURE", "Listener", "Speaker"]

_logger = logging.getLogger(__name__)

TRANSCRIPTION_FEATURE = "transcription"
# Bytes per second of a WhatsApp voice note (Opus at ~32 kbit/s): the estimate when the
# container does not say how long it is.
_OPUS_BYTES_PER_S = 4000

_RESERVE = (
    "select public.ai_reserve(tenant_id => %(tenant)s, feature => %(feature)s, model => %(model)s,"
    " estimated_audio_seconds => %(seconds)s::numeric, conversation_id => %(conversation)s,"
    " message_id => %(message)s, bot_id => %(bot)s, request_id => %(request)s, phone => %(phone)s,"
    " hold_seconds => %(hold)s::integer) as result"
)
_SETTLE = (
    "select public.ai_settle(reservation_id => %(reservation)s, outcome => %(outcome)s,"
    " audio_seconds => %(seconds)s::numeric, latency_ms => %(latency)s::integer,"
    " error_code => %(error_code)s, error_message => %(error_message)s) as result"
)
_STORE = "update public.messages set transcription = %s where id = %s and transcription is null"


def _phone(message: InboundMessage) -> str | None:
    return f"+{message.wa_id}" if message.wa_id else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """Speech to text for voice notes and call recordings, billed per audio second.

    Parameters:
        transcriber: an OpenAI-compatible provider (Whisper on OpenAI or Groq, a stand-in).
        model: the model it runs, as `ai_models` names it under the provider
            (`{transcriber.name}/{model}` must be registered, with its price per minute).
        connect: lends connections; reservation, settlement and the transcript each commit
            on their own (the provider bills the call whatever happens to the reply).
    """

    transcriber: Transcriber
    model: str
    connect: Connect
    hold_seconds: int = 120

    @property
    def gateway_id(self) -> str:
        return f"{self.transcriber.name}/{self.model}"

    async def transcribe(
        self, message: InboundMessage, audio: bytes, bot_id: uuid.UUID
    ) -> str | Refusal | None:
        """The transcript, stored on the message (the AI memory trigger takes it from there);
        a Refusal when the budget says no; None when the provider could not transcribe."""
        try:
            text = await self.hear(
                tenant_id=message.tenant_id, audio=audio, mime=message.media_mime_type or "audio/ogg",
                feature=TRANSCRIPTION_FEATURE, request_id=message.wamid,
                conversation_id=message.conversation_id, message_id=message.message_id, bot_id=bot_id,
                phone=_phone(message),
            )  # fmt: skip
        except ProviderError as exc:
            _logger.warning("voice note %s not transcribed: %s", message.message_id, exc.code)
            return None
        if isinstance(text, Refusal):
            return text
        if text:
            async with transaction(self.connect) as conn:
                await conn.execute(_STORE, (text, message.message_id))
        return text or None

    async def hear(
        self,
        *,
        tenant_id: uuid.UUID,
        audio: bytes,
        mime: str,
        feature: str,
        request_id: str | None,
        seconds: float | None = None,
        conversation_id: uuid.UUID | None = None,
        message_id: uuid.UUID | None = None,
        bot_id: uuid.UUID | None = None,
        phone: str | None = None,
    ) -> str | Refusal:
        """The text of `audio` (stripped), billed to the tenant under `feature`: a Refusal when the
        budget says no (the provider is not called); a provider failure is settled and raised
        (ProviderError). `seconds`: the known duration, else read from the Opus container or
        estimated from the size."""
        estimate = seconds or ogg_opus_duration(audio) or round(len(audio) / _OPUS_BYTES_PER_S, 3)
        params = {
            "tenant": tenant_id, "feature": feature, "model": self.gateway_id, "seconds": estimate,
            "conversation": conversation_id, "message": message_id, "bot": bot_id, "request": request_id,
            "phone": phone, "hold": self.hold_seconds,
        }  # fmt: skip
        async with transaction(self.connect) as conn:
            answer: dict[str, Any] = (await (await conn.execute(_RESERVE, params)).fetchone() or {})["result"]
        if answer.get("status") != "reserved":
            _logger.info("transcription refused for tenant %s: %s", tenant_id, answer.get("message"))
            return Refusal(reason=str(answer.get("reason")), message=str(answer.get("message") or ""))
        reservation = answer["reservation_id"]
        request = TranscriptionRequest(
            audio=audio, mime=mime, seconds=estimate, language="pt", tenant_id=str(tenant_id),
            conversation_id=str(conversation_id) if conversation_id else None,
        )  # fmt: skip
        began = time.perf_counter()
        try:
            result = await self.transcriber.transcribe(request)
        except ProviderError as exc:
            await self._settle(reservation, "failure", 0, began, exc.code, exc.message)
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):  # give the hold back even when cancelled
                await self._settle(reservation, "cancelled", 0, began)
            raise
        await self._settle(reservation, "success", result.seconds or estimate, began)
        return result.text.strip()

    async def _settle(
        self,
        reservation: str,
        outcome: str,
        seconds: float,
        began: float,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        params = {
            "reservation": reservation, "outcome": outcome, "seconds": seconds,
            "latency": round((time.perf_counter() - began) * 1000),
            "error_code": error_code, "error_message": error_message,
        }  # fmt: skip
        async with transaction(self.connect) as conn:
            await conn.execute(_SETTLE, params)


class Speaker:
    """Voice notes of replies.

    Parameters:
        services: a SpeechService per TTS model, by `ai_models.gateway_id`
            (openai/tts-1, espeak/espeak-ng...).
        default: the model used when a bot names none or one not configured here (its
            voice is then the model's own: a bot's voice belongs to the model it named).
        api: uploads the audio to WhatsApp.
    """

    def __init__(self, *, services: Mapping[str, SpeechService], default: str | None, api: GraphAPI) -> None:
        self._services = dict(services)
        self._default = default if default in self._services else None
        self._api = api

    async def media_id(self, message: InboundMessage, bot: Bot, text: str) -> str | None:
        """A WhatsApp media id of `text` spoken, uploaded from the message's number unless
        that number already has it; None (the reply goes as text only) when no voice is
        configured or synthesis, budget or upload says no."""
        if bot.tts_model in self._services:
            service, voice = self._services[bot.tts_model], bot.tts_voice
        elif self._default is not None:
            service, voice = self._services[self._default], None
        else:
            return None
        if not (message.phone_number_id and message.whatsapp_number_id):
            return None
        context = CallContext(
            conversation_id=message.conversation_id, message_id=message.message_id, bot_id=bot.id,
            request_id=message.wamid, phone=_phone(message),
        )  # fmt: skip
        try:
            note = await service.voice_note(
                message.tenant_id, text, voice, number_id=message.whatsapp_number_id, context=context,
                language="pt-BR",
            )  # fmt: skip
            if note.whatsapp_media_id is not None:
                return note.whatsapp_media_id
            uploaded = await self._api.upload_media(
                message.phone_number_id, note.audio.data, mime_type=note.audio.mime, filename="resposta.ogg",
                token=message.access_token,
            )  # fmt: skip
        except (SpeechRefused, ProviderError, WhatsAppError, MessageValidationError) as exc:
            _logger.warning("conversation %s: reply goes as text only (%s)", message.conversation_id, exc)
            return None
        await service.remember_upload(
            message.tenant_id, note.cache_key, message.whatsapp_number_id, uploaded.id
        )
        return uploaded.id
