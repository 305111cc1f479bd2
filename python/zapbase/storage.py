"""Where inbound media (voice notes, images, documents) are kept once downloaded from Meta.

Meta deletes webhook media after 7 days, so the worker copies each file at once. Keys are
`<bucket>/<tenant_id>/<conversation_id>/<message_id><ext>`: the same key names the file in
a local directory (default) and in Supabase Storage (when SUPABASE_URL and
SUPABASE_SERVICE_ROLE_KEY are set), so `messages.media_storage_path` reads the same in both.
Writes are idempotent (same key, same bytes), so a retried message simply overwrites.
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
    "LocalStorage",
    "MediaStorage",
    "StorageError",
    "SupabaseStorage",
    "media_key",
    "storage_from_settings",
]

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
    """A media file could not be stored."""


class MediaStorage(Protocol):
    async def put(self, key: str, content: bytes, mime_type: str) -> None:
        """Store `content` under `key`, replacing what is there."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes stored under `key`."""
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
        return await anyio.Path(self.path_of(key)).read_bytes()

    @staticmethod
    def _write(path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        partial.write_bytes(content)
        os.replace(partial, path)


class SupabaseStorage:
    """Supabase Storage over its REST API (`/storage/v1/object/<bucket>/<path>`), as the
    service role; the bucket must exist (private, created in Studio or by the CLI)."""

    def __init__(self, http: httpx.AsyncClient, *, url: str, service_key: str) -> None:
        if "authorization" in http.headers:
            raise ValueError("the httpx client already sends an Authorization header")
        self._http = http
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
        if response.is_error:
            raise StorageError(f"Supabase Storage has no {key}: HTTP {response.status_code}")
        return response.content


def storage_from_settings(settings: Settings, http: httpx.AsyncClient) -> MediaStorage:
    """Supabase Storage when its URL and service key are configured, else the local directory."""
    if settings.supabase_url and settings.supabase_service_role_key:
        return SupabaseStorage(
            http, url=settings.supabase_url, service_key=settings.supabase_service_role_key.get_secret_value()
        )
    return LocalStorage(settings.zapbase_media_dir.resolve())
