"""Fixtures for the TTS tests: the anyio backend and, for the database-backed service, a
worker connection, the zero-latency speech stand-in and a local audio store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from support import Db
from zapbase.tts.pg_cache import LocalAudioStore
from zapbase.tts.providers import OpenAISpeech
from zapbase.tts.standins import ZERO_LATENCY, SpeechStandin
from zapbase.worker.database import Connect, borrow
from zapbase.worker.database import connect as connect_db


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def connect(db: Db, anyio_backend: str) -> AsyncIterator[Connect]:
    async with await connect_db(db.url) as conn:
        yield borrow(conn)


@pytest.fixture
def speech_standin() -> SpeechStandin:
    return SpeechStandin(latency=ZERO_LATENCY)


@pytest.fixture
async def openai_speech(speech_standin: SpeechStandin, anyio_backend: str) -> AsyncIterator[OpenAISpeech]:
    transport = httpx.ASGITransport(app=speech_standin.app)
    async with httpx.AsyncClient(transport=transport) as http:
        yield OpenAISpeech(api_key="sk-standin", http=http, base_url="http://tts.test", voice="nova")


@pytest.fixture
def audio_store(tmp_path: Path) -> LocalAudioStore:
    return LocalAudioStore(tmp_path / "storage")
