"""The object store: inbound media (voice notes, images, documents) once downloaded from
Meta, and synthesised speech (the TTS cache's audio).

Meta deletes webhook media after 7 days, so the worker copies each file at once. Keys are
`<bucket>/<path>` (inbound media: `<bucket>/<tenant_id>/<conversation_id>/<message_id><ext>`,
speech: `<bucket>/tts/<tenant_id>/...`): the same key names the file in a local directory
(default) and in Supabase Storage (when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are
set), so `messages.media_storage_path` and `tts_cache.storage_path` read the same in both,
and every replica sees what another stored. Writes are idempotent (same key, same bytes),
so a retried message simply overwrites.
"""

from __future__ import annotations

import mimetypes
import os
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import anyio
import httpx

from zapbase.errors import ZapbaseError
from zapbase.settings import Settings

__all__ = [
    "DEFAULT_BUCKET",
    "LocalStorage",
    "ObjectMissing",
    "ObjectStore",
    "StorageError",
    "SupabaseStorage",
    "media_key",
    "storage_from_settings",
]

#: The bucket of `zapbase_media_bucket`'s default.
DEFAULT_BUCKET = "whatsapp-media"
# mimetypes knows neither WhatsApp's voice-note type nor some of Meta's aliases.
_EXTENSIONS = {
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/aac": ".aac",
    "audio/amr": ".amr",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "text/plain": ".txt",
}


class StorageError(ZapbaseError):
    """An object could not be stored or read."""


class ObjectMissing(StorageError):
    """No object is stored under the key."""


class ObjectStore(Protocol):
    async def put(self, key: str, content: bytes, mime_type: str) -> None:
        """Store `content` under `key`, replacing what is there."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes stored under `key`; ObjectMissing when there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object under `key` (nothing to do when there is none)."""
        ...


def extension_for(mime_type: str | None) -> str:
    base = (mime_type or "").split(";", 1)[0].strip().lower()
    return _EXTENSIONS.get(base) or mimetypes.guess_extension(base) or ".bin"


def media_key(
    bucket: str,
    tenant_id: uuid.UUID,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    mime_type: str | None,
) -> str:
    return f"{bucket}/{tenant_id}/{conversation_id}/{message_id}{extension_for(mime_type)}"


def _checked_parts(key: str) -> list[str]:
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise StorageError(f"not a storage key: {key!r}")
    return parts


class LocalStorage:
    """Files under `root`; each write lands complete or not at all (write, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path:
        return self.root.joinpath(*_checked_parts(key))

    async def put(self, key: str, content: bytes, mime_type: str) -> None:
        await anyio.to_thread.run_sync(self._write, self.path_of(key), content)

    async def get(self, key: str) -> bytes:
        try:
            return await anyio.Path(self.path_of(key)).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectMissing(f"no object {key}") from exc

    async def delete(self, key: str) -> None:
        await anyio.Path(self.path_of(key)).unlink(missing_ok=True)

    @staticmethod
    def _write(path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        partial.write_bytes(content)
        os.replace(partial, path)


class SupabaseStorage:
    """Supabase Storage over its REST API (`/storage/v1/object/<bucket>/<path>`), as the
    service role; the bucket must exist (private, created in Studio or by the CLI)."""

    def __init__(self, client: httpx.AsyncClient, *, url: str, service_key: str) -> None:
        if "authorization" in client.headers:
            raise ValueError("the httpx client already sends an Authorization header")
        self._http = client
        self._root = f"{url.rstrip('/')}/storage/v1/object"
        self._headers = {"Authorization": f"Bearer {service_key}", "apikey": service_key}

    def _url(self, key: str) -> str:
        return f"{self._root}/{'/'.join(quote(part, safe='') for part in _checked_parts(key))}"

    async def put(self, key: str, content: bytes, mime_type: str) -> None:
        headers = {**self._headers, "Content-Type": mime_type, "x-upsert": "true"}
        try:
            response = await self._http.post(self._url(key), content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise StorageError(f"Supabase Storage upload of {key} failed: {exc!r}") from exc
        if response.is_error:
            raise StorageError(
                f"Supabase Storage refused {key}: HTTP {response.status_code} {response.text[:300]}"
            )

    async def get(self, key: str) -> bytes:
        try:
            response = await self._http.get(self._url(key), headers=self._headers)
        except httpx.HTTPError as exc:
            raise StorageError(f"Supabase Storage download of {key} failed: {exc!r}") from exc
        if response.status_code in (400, 404):  # Storage answers 400 "not_found" for a missing object
            raise ObjectMissing(f"Supabase Storage has no {key}: HTTP {response.status_code}")
        if response.is_error:
            raise StorageError(f"Supabase Storage could not read {key}: HTTP {response.status_code}")
        return response.content

    async def delete(self, key: str) -> None:
        try:
            response = await self._http.delete(self._url(key), headers=self._headers)
        except httpx.HTTPError as exc:
            raise StorageError(f"Supabase Storage delete of {key} failed: {exc!r}") from exc
        if response.is_error and response.status_code not in (400, 404):
            raise StorageError(f"Supabase Storage kept {key}: HTTP {response.status_code}")


def storage_from_settings(settings: Settings, client: httpx.AsyncClient) -> ObjectStore:
    """Supabase Storage when its URL and service key are configured, else the local directory."""
    if settings.supabase_url and settings.supabase_service_role_key:
        key = settings.supabase_service_role_key.get_secret_value()
        return SupabaseStorage(client, url=settings.supabase_url, service_key=key)
    return LocalStorage(settings.zapbase_media_dir.resolve())
