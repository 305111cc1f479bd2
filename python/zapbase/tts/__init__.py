"""Text-to-speech for voice-note replies: providers, the cache key, local stand-ins.

    provider = OpenAISpeech(api_key=key, client=client)   # or ElevenLabsSpeech, EspeakSpeech.detect()
    speech = await speak(provider, reply_text, cache=tenant_cache, language="pt-BR")
    # speech.audio.data is Ogg Opus; speech.cached / speech.spec.characters feed usage

`zapbase.tts.cache.PostgresSpeechCache` implements `SpeechCache` over the tenant-scoped
`tts_cache` table; `zapbase.tts.service.SpeechService` puts it in front of a provider and
settles every synthesis and every hit in `ai_usage`, refusing what the budget refuses.
"""

from __future__ import annotations

from zapbase.tts.cache_key import (
    KEY_VERSION,
    SpeechSpec,
    VoiceSetting,
    normalize_speech_text,
    speech_cache_key,
)
from zapbase.tts.espeak import EspeakSpeech
from zapbase.tts.providers import (
    OGG_OPUS,
    Audio,
    BaseSpeechProvider,
    ElevenLabsSpeech,
    OpenAISpeech,
    Speech,
    SpeechCache,
    SpeechOptions,
    SpeechProvider,
    ogg_opus_duration,
    speak,
)

__all__ = [
    "KEY_VERSION",
    "OGG_OPUS",
    "Audio",
    "BaseSpeechProvider",
    "ElevenLabsSpeech",
    "EspeakSpeech",
    "OpenAISpeech",
    "Speech",
    "SpeechCache",
    "SpeechOptions",
    "SpeechProvider",
    "SpeechSpec",
    "VoiceSetting",
    "normalize_speech_text",
    "ogg_opus_duration",
    "speak",
    "speech_cache_key",
]
