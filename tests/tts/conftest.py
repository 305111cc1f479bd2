"""Fixtures for the TTS tests: the zero-latency speech stand-in and a local audio store
(the worker connection, `connect`, comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from zapbase.standins.speech import ZERO_LATENCY, SpeechStandIn
from zapbase.storage import LocalStorage
from zapbase.tts.providers import OpenAISpeech


@pytest.fixture
def speech_standin() -> SpeechStandIn:
    return SpeechStandIn(latency=ZERO_LATENCY)


@pytest.fixture
async def openai_speech(speech_standin: SpeechStandIn, anyio_backend: str) -> AsyncIterator[OpenAISpeech]:
    transport = httpx.ASGITransport(app=speech_standin.app)
    async with httpx.AsyncClient(transport=transport) as http:
        yield OpenAISpeech(api_key="sk-standin", client=http, base_url="http://tts.test", voice="nova")


@pytest.fixture
def audio_store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")
