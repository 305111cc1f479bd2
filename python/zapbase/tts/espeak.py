"""The offline voice: espeak-ng → WAV → Ogg Opus (ffmpeg, else opusenc).

Robotic but free and fully local, for the offline demo and for tenants without a TTS
key. Nothing here is a Python dependency: `EspeakSpeech.detect()` returns None unless
the programs are on PATH (Debian: `apt-get install espeak-ng ffmpeg`, or `opus-tools`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Unpack

import anyio

from zapbase.ai.errors import BadRequest, ServerError
from zapbase.tts.cache_key import SpeechSpec, normalize_speech_text
from zapbase.tts.providers import OGG_OPUS, Audio, BaseSpeechProvider, SpeechOptions, ogg_opus_duration

__all__ = ["EspeakSpeech"]


class EspeakSpeech(BaseSpeechProvider):
    """espeak-ng → WAV → Ogg Opus (ffmpeg, else opusenc). Robotic, free, fully offline.

    Build it with `EspeakSpeech.detect()`, which returns None unless espeak-ng and an
    Opus encoder are on PATH. `voice` is an espeak-ng voice ("pt-br", "pt", "en-us").
    """

    name = "espeak"

    def __init__(
        self,
        *,
        espeak: str,
        encoder: Sequence[str],
        version: str,
        voice: str = "pt-br",
        words_per_minute: int = 165,
    ) -> None:
        self._espeak = espeak
        self._encoder = list(encoder)
        self._version = version
        self._voice = voice
        self._wpm = words_per_minute

    @classmethod
    def detect(cls, *, voice: str = "pt-br") -> EspeakSpeech | None:
        espeak = shutil.which("espeak-ng")
        if espeak is None:
            return None
        if ffmpeg := shutil.which("ffmpeg"):
            options = "-hide_banner -loglevel error -f wav -i pipe:0 -c:a libopus -b:a 32k"
            # bitexact (and opusenc's fixed serial): same text, same bytes, so caches agree.
            options += " -application voip -fflags +bitexact -flags:a +bitexact -f ogg pipe:1"
            encoder = [ffmpeg, *options.split()]
        elif opusenc := shutil.which("opusenc"):
            encoder = [opusenc, "--quiet", "--bitrate", "32", "--serial", "1", "-", "-"]
        else:
            return None
        # The engine version is part of the voice: a new espeak-ng sounds different.
        banner = subprocess.run(
            [espeak, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        match = re.search(r"(\d+\.\d+(?:\.\d+)?)", banner)
        return cls(espeak=espeak, encoder=encoder, version=match[1] if match else "", voice=voice)

    def spec_for(self, text: str, voice: str | None = None, **options: Unpack[SpeechOptions]) -> SpeechSpec:
        return SpeechSpec(
            provider=self.name,
            model="espeak-ng",
            voice=voice or self._voice,
            voice_version=self._version,
            text=text,
            output_format="ogg_opus_32k",
            **options,
            voice_settings={"wpm": self._wpm, "encoder": self._encoder[0].rsplit("/", 1)[-1]},
        )

    async def render(self, spec: SpeechSpec) -> Audio:
        wpm = max(80, min(450, round(self._wpm * spec.speed)))
        # Text goes through stdin: never parsed as options, no argv length limit.
        wav = await self._run(
            [self._espeak, "-v", spec.voice, "-s", str(wpm), "--stdout"],
            normalize_speech_text(spec.text).encode(),
            spec,
        )
        ogg = await self._run(self._encoder, wav, spec)
        return Audio(data=ogg, mime=OGG_OPUS, duration_s=ogg_opus_duration(ogg), characters=spec.characters)

    async def _run(self, command: list[str], stdin: bytes, spec: SpeechSpec) -> bytes:
        result = await anyio.run_process(command, input=stdin, check=False)
        if result.returncode != 0 or not result.stdout:
            detail = result.stderr.decode(errors="replace").strip()[:300]
            tool = command[0].rsplit("/", 1)[-1]
            # An unknown voice is the caller's mistake; anything else is a local fault.
            error = BadRequest if "voice does not exist" in detail else ServerError
            raise error(
                f"{tool} failed ({result.returncode}): {detail}", provider=self.name, model=spec.model
            )
        return result.stdout
