"""The TTS cache: rows in Postgres (`tts_cache`), the audio bytes in the object store
(`zapbase.storage`, the same one as inbound media, so every replica finds them).

Rows go through `tts_cache_lookup` (counts the hit and the cost it avoided), `tts_cache_store`
(the first synthesis of a key wins) and `tts_cache_set_media` (the WhatsApp media id of the
latest upload, per number, 30 days); `evict_tts_cache` runs the eviction job and deletes
the objects it names. The database keeps only a hash and a masked preview of the text.

An object's path is a function of tenant and key, so two workers that synthesised the
same text write the same object, and a row never points at a missing file for long.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from zapbase.db.pool import Connect, Connection, transaction
from zapbase.storage import DEFAULT_BUCKET, ObjectMissing, ObjectStore
from zapbase.tts.cache_key import SpeechSpec
from zapbase.tts.providers import OGG_OPUS, Audio, ogg_opus_duration

__all__ = [
    "CacheHit",
    "PostgresSpeechCache",
    "evict_tts_cache",
    "mime_for_format",
]

_logger = logging.getLogger(__name__)

_LOOKUP = "select * from public.tts_cache_lookup(%s, %s, %s, %s)"
_STORE = (
    "select * from public.tts_cache_store(tenant_id => %(tenant)s, cache_key => %(key)s,"
    " provider => %(provider)s, model => %(model)s, voice => %(voice)s, format => %(format)s,"
    " speech_text => %(text)s, storage_path => %(path)s, size_bytes => %(size)s::bigint,"
    " characters => %(characters)s::integer, cost_usd => %(cost)s::numeric,"
    " duration_seconds => %(duration)s::numeric,"
    " language => %(language)s, voice_version => %(voice_version)s, settings => %(settings)s)"
)
_SET_MEDIA = "select public.tts_cache_set_media(%s, %s, %s, %s, %s) as found"
_EVICT = "select * from private.job_tts_cache_evict(%s, %s, %s, %s)"


def mime_for_format(output_format: str) -> str:
    """MIME type of an output format as the providers name them (opus, opus_48000_64,
    ogg_opus_32k, mp3_44100_128, wav, pcm_24000, ...)."""
    fmt = output_format.lower()
    if "opus" in fmt:
        return OGG_OPUS
    codec = fmt.split("_")[0]
    return {
        "mp3": "audio/mpeg", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav",
        "pcm": "audio/L16", "ulaw": "audio/basic",
    }.get(codec, "application/octet-stream")  # fmt: skip


_EXTENSIONS = {
    OGG_OPUS: "ogg", "audio/mpeg": "mp3", "audio/aac": "aac", "audio/flac": "flac", "audio/wav": "wav",
}  # fmt: skip


def _format_name(output_format: str) -> str:
    # tts_cache.format is ^[a-z0-9_]{2,20}$: "opus_48000_64" fits, keep what fits
    name = "".join(c if c.isalnum() else "_" for c in output_format.lower())[:20]
    return name if len(name) >= 2 else "audio"


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheHit:
    """A `tts_cache_lookup` hit. `whatsapp_media_id` is set only when the number asked
    about uploaded it and it does not expire within the margin: send it, upload nothing."""

    cache_id: uuid.UUID
    storage_path: str
    output_format: str
    characters: int
    cost_usd: Decimal
    hit_count: int
    whatsapp_media_id: str | None
    media_expires_at: datetime | None
    duration_s: float | None = None
    audio: Audio | None = field(default=None, compare=False)


class PostgresSpeechCache:
    """`SpeechCache` of one tenant over `tts_cache` (usable with `speak`); the speech
    service also uses `lookup_in` to settle a hit in the same transaction as the lookup.

    Parameters:
        store: keeps the audio under `<bucket>/tts/<tenant>/...`.
        number_id: the WhatsApp number the audio will be sent from (media ids are per number).
        media_margin: a media id expiring sooner than this is treated as expired.
    """

    def __init__(
        self,
        *,
        connect: Connect,
        tenant_id: uuid.UUID,
        store: ObjectStore,
        bucket: str = DEFAULT_BUCKET,
        number_id: uuid.UUID | None = None,
        media_margin: timedelta = timedelta(days=1),
    ) -> None:
        self._connect = connect
        self.tenant_id = tenant_id
        self._store = store
        self._bucket = bucket
        self._number_id = number_id
        self._margin = media_margin

    def storage_path(self, key: str, output_format: str) -> str:
        extension = _EXTENSIONS.get(mime_for_format(output_format), "bin")
        return f"{self._bucket}/tts/{self.tenant_id}/{key[:2]}/{key}.{extension}"

    async def lookup_in(
        self, conn: Connection, key: str, number_id: uuid.UUID | None = None
    ) -> CacheHit | None:
        """The row of `key` (counting the hit), without its audio; None on a miss."""
        number = number_id or self._number_id
        row = await (await conn.execute(_LOOKUP, (self.tenant_id, key, number, self._margin))).fetchone()
        if row is None:
            return None
        return CacheHit(
            cache_id=row["cache_id"],
            storage_path=row["storage_path"],
            output_format=row["format"],
            characters=row["characters"],
            cost_usd=row["cost_usd"],
            hit_count=row["hit_count"],
            whatsapp_media_id=row["whatsapp_media_id"] if row["media_valid"] else None,
            media_expires_at=row["media_expires_at"],
            duration_s=float(row["duration_seconds"]) if row["duration_seconds"] is not None else None,
        )

    async def load(self, hit: CacheHit) -> Audio | None:
        """The audio of a hit; None when its object is gone (treat as a miss)."""
        try:
            data = await self._store.get(hit.storage_path)
        except ObjectMissing:
            _logger.error("tts_cache row %s points at a missing object %s", hit.cache_id, hit.storage_path)
            return None
        mime = mime_for_format(hit.output_format)
        # the column keeps milliseconds; an Ogg stream knows its exact length
        duration = (ogg_opus_duration(data) if mime == OGG_OPUS else None) or hit.duration_s
        return Audio(data=data, mime=mime, duration_s=duration, characters=hit.characters)

    async def get(self, key: str) -> Audio | None:
        async with transaction(self._connect) as conn:
            hit = await self.lookup_in(conn, key)
        return None if hit is None else await self.load(hit)

    async def put(self, key: str, spec: SpeechSpec, audio: Audio, cost_usd: Decimal = Decimal(0)) -> None:
        """Store a fresh synthesis: the object first, then the row (so no row points at
        a file still being written)."""
        path = self.storage_path(key, spec.output_format)
        await self._store.put(path, audio.data, audio.mime)
        params: dict[str, Any] = {
            "tenant": self.tenant_id,
            "key": key,
            "provider": spec.provider.lower(),
            "model": spec.model,
            "voice": spec.voice,
            "format": _format_name(spec.output_format),
            "text": spec.text,
            "path": path,
            "size": len(audio.data),
            "characters": audio.characters,
            "cost": cost_usd,
            "duration": audio.duration_s,
            "language": spec.language or None,
            "voice_version": spec.voice_version or None,
            "settings": Jsonb(
                {"speed": spec.speed, "instructions": spec.instructions, "voice": dict(spec.voice_settings)}
            ),
        }
        async with transaction(self._connect) as conn:
            row = await (await conn.execute(_STORE, params)).fetchone()
        assert row is not None
        if not row["stored"] and row["cache_storage_path"] != path:
            await self._store.delete(path)  # another worker's audio won; ours is a stray copy

    async def remember_upload(
        self, key: str, number_id: uuid.UUID, media_id: str, expires_at: datetime | None = None
    ) -> bool:
        """Keep the media id of an upload from `number_id` (30 days unless `expires_at`);
        False when the key is no longer cached."""
        async with transaction(self._connect) as conn:
            cur = await conn.execute(_SET_MEDIA, (self.tenant_id, key, number_id, media_id, expires_at))
            row = await cur.fetchone()
        return bool(row and row["found"])


async def evict_tts_cache(
    connect: Connect,
    store: ObjectStore,
    *,
    max_age: timedelta = timedelta(days=90),
    max_total_bytes: int = 10 * 1024**3,
    tenant_id: uuid.UUID | None = None,
    max_tenant_bytes: int | None = None,
) -> list[dict[str, Any]]:
    """Run `private.job_tts_cache_evict` and delete the objects of the rows it removed."""
    async with transaction(connect) as conn:
        cur = await conn.execute(_EVICT, (max_age, max_total_bytes, tenant_id, max_tenant_bytes))
        evicted = await cur.fetchall()
    for row in evicted:
        await store.delete(row["storage_path"])
    return evicted
