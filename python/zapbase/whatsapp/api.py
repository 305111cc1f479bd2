"""Async client of the WhatsApp Cloud API (Graph API) used by the sender and media jobs.

It runs on an injected `httpx.AsyncClient` (timeouts, pooling and transport belong to the
caller; tests pass an `httpx.ASGITransport` onto the simulator) and sends the bearer token
per request, because every WhatsApp number has its own token. Failures raise the typed
errors of `zapbase.whatsapp.errors`; payloads are checked by `zapbase.whatsapp.messages`
before any request leaves.

Example::

    async with httpx.AsyncClient(timeout=10) as http:
        api = GraphAPI(http)
        sent = await api.send_text("106540352242922", "+5511987654321", "Olá!", token=token)
        sent.wamid  # "wamid.HBgM..."
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from zapbase.whatsapp import messages
from zapbase.whatsapp.errors import (
    GraphConnectionError,
    GraphTimeout,
    MediaError,
    UnexpectedResponse,
    error_from_response,
)
from zapbase.whatsapp.messages import ListSection, MediaSource, MediaType, Recipient, ReplyButton

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DownloadedMedia",
    "GraphAPI",
    "MediaInfo",
    "SentMessage",
    "UploadedMedia",
]

_logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"
# Documents are the largest media Meta carries (100 MB).
DEFAULT_DOWNLOAD_LIMIT = 100 * 1024 * 1024
_PATH_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
# Meta serves media files from its CDN (lookaside.fbsbx.com), not from the Graph host.
_META_MEDIA_HOST_SUFFIX = ".fbsbx.com"
_TEMPLATE_FIELDS = (
    "id,name,language,category,status,components,quality_score,rejected_reason,parameter_format"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SentMessage:
    """Meta accepted the message; delivery is reported later by status webhooks."""

    wamid: str
    input: str | None
    wa_id: str | None
    # Template pacing ("accepted", "held_for_quality_assessment", "paused").
    message_status: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> SentMessage:
        sent = data.get("messages")
        first = sent[0] if isinstance(sent, list) and sent else None
        if not isinstance(first, Mapping) or not isinstance(first.get("id"), str):
            raise UnexpectedResponse("send answer has no messages[0].id", raw=data)
        contacts = data.get("contacts")
        contact = contacts[0] if isinstance(contacts, list) and contacts else {}
        contact = contact if isinstance(contact, Mapping) else {}
        return cls(
            wamid=first["id"],
            input=_opt_str(contact.get("input")),
            wa_id=_opt_str(contact.get("wa_id")),
            message_status=_opt_str(first.get("message_status")),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadedMedia:
    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaInfo:
    """`GET /{media_id}`; the url expires after 5 minutes and needs the bearer token."""

    id: str
    url: str
    mime_type: str
    sha256: str | None
    file_size: int | None

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> MediaInfo:
        url, media_id, mime = data.get("url"), data.get("id"), data.get("mime_type")
        if not (isinstance(url, str) and isinstance(media_id, str) and isinstance(mime, str)):
            raise UnexpectedResponse("media answer lacks url, id or mime_type", raw=data)
        size = data.get("file_size")  # Meta has sent it both as a number and as a string
        return cls(
            id=media_id,
            url=url,
            mime_type=mime,
            sha256=_opt_str(data.get("sha256")),
            file_size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadedMedia:
    id: str
    content: bytes = field(repr=False)
    mime_type: str
    sha256: str | None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@contextmanager
def _transport_errors(what: str) -> Iterator[None]:
    """No HTTP answer at all: retryable, though Meta may have accepted a send (no idempotency key)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise GraphTimeout(f"{what} timed out: {exc!r}") from exc
    except httpx.TransportError as exc:
        raise GraphConnectionError(f"{what} failed: {exc!r}") from exc


def _path_id(name: str, value: str) -> str:
    # Ids are interpolated into the URL path: refuse anything that could change the route.
    if not _PATH_ID.fullmatch(value):
        raise ValueError(f"{name} is not a Graph id: {value!r}")
    return value


class GraphAPI:
    """WhatsApp Cloud API calls.

    **Parameters**

    * **client** - the `httpx.AsyncClient` to use; it must not carry an Authorization
      header, since tokens differ per number and are sent per request.
    * **token** - default access token when a call passes none.
    * **base_url** - `https://graph.facebook.com`, or the simulator's address.
    * **version** - Graph API version path segment, `v25.0` by default.
    * **download_limit** - largest media download accepted, in bytes.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        version: str = DEFAULT_API_VERSION,
        download_limit: int = DEFAULT_DOWNLOAD_LIMIT,
    ) -> None:
        if "authorization" in client.headers:
            raise ValueError(
                "the httpx client already sends an Authorization header; "
                "pass tokens to GraphAPI instead (they differ per number)"
            )
        self._client = client
        self._token = token
        self._root = f"{base_url.rstrip('/')}/{version.strip('/')}"
        self._origin = httpx.URL(base_url)
        self._download_limit = download_limit

    # -- messages -------------------------------------------------------------------------

    async def send(
        self, phone_number_id: str, payload: Mapping[str, Any], *, token: str | None = None
    ) -> SentMessage:
        """Send a body built by `zapbase.whatsapp.messages` (e.g. one stored in a queue row)."""
        data = await self._request("POST", self._url(phone_number_id, "messages"), token=token, json=payload)
        sent = SentMessage.from_response(data)
        _logger.debug("sent %s via %s as %s", payload.get("type"), phone_number_id, sent.wamid)
        return sent

    async def send_text(
        self,
        phone_number_id: str,
        to: Recipient | str,
        body: str,
        *,
        preview_url: bool = False,
        reply_to: str | None = None,
        token: str | None = None,
    ) -> SentMessage:
        payload = messages.text_message(to, body, preview_url=preview_url, reply_to=reply_to)
        return await self.send(phone_number_id, payload, token=token)

    async def send_template(
        self,
        phone_number_id: str,
        to: Recipient | str,
        name: str,
        language: str,
        components: Sequence[Mapping[str, Any]] = (),
        *,
        token: str | None = None,
    ) -> SentMessage:
        payload = messages.template_message(to, name, language, components)
        return await self.send(phone_number_id, payload, token=token)

    async def send_interactive_buttons(
        self,
        phone_number_id: str,
        to: Recipient | str,
        body: str,
        buttons: Sequence[ReplyButton],
        *,
        header: str | None = None,
        footer: str | None = None,
        reply_to: str | None = None,
        token: str | None = None,
    ) -> SentMessage:
        payload = messages.buttons_message(to, body, buttons, header=header, footer=footer, reply_to=reply_to)
        return await self.send(phone_number_id, payload, token=token)

    async def send_interactive_list(
        self,
        phone_number_id: str,
        to: Recipient | str,
        body: str,
        button: str,
        sections: Sequence[ListSection],
        *,
        header: str | None = None,
        footer: str | None = None,
        reply_to: str | None = None,
        token: str | None = None,
    ) -> SentMessage:
        payload = messages.list_message(
            to, body, button, sections, header=header, footer=footer, reply_to=reply_to
        )
        return await self.send(phone_number_id, payload, token=token)

    async def send_media(
        self,
        phone_number_id: str,
        to: Recipient | str,
        media_type: MediaType,
        source: MediaSource,
        *,
        caption: str | None = None,
        filename: str | None = None,
        voice: bool = False,
        reply_to: str | None = None,
        token: str | None = None,
    ) -> SentMessage:
        payload = messages.media_message(
            to, media_type, source, caption=caption, filename=filename, voice=voice, reply_to=reply_to
        )
        return await self.send(phone_number_id, payload, token=token)

    async def send_reaction(
        self,
        phone_number_id: str,
        to: Recipient | str,
        message_id: str,
        emoji: str,
        *,
        token: str | None = None,
    ) -> SentMessage:
        payload = messages.reaction_message(to, message_id, emoji)
        return await self.send(phone_number_id, payload, token=token)

    async def mark_read(
        self,
        phone_number_id: str,
        message_id: str,
        *,
        typing_indicator: bool = False,
        token: str | None = None,
    ) -> None:
        """Blue ticks on `message_id` and earlier ones; optionally show "typing…"."""
        payload = messages.read_receipt(message_id, typing_indicator=typing_indicator)
        data = await self._request("POST", self._url(phone_number_id, "messages"), token=token, json=payload)
        if data.get("success") is not True:
            raise UnexpectedResponse("mark-as-read answer is not success=true", raw=data)

    # -- templates (WhatsApp Business Management API) ------------------------------------------

    async def list_templates(
        self, waba_id: str, *, token: str | None = None, page_size: int = 100
    ) -> list[Mapping[str, Any]]:
        """Every template of a WABA, following `paging.cursors.after` page by page."""
        url = f"{self._root}/{_path_id('waba_id', waba_id)}/message_templates"
        params: dict[str, str] = {"limit": str(page_size), "fields": _TEMPLATE_FIELDS}
        templates: list[Mapping[str, Any]] = []
        while True:
            data = await self._request("GET", url, token=token, params=params)
            page = data.get("data")
            if not isinstance(page, list):
                raise UnexpectedResponse("template list has no data array", raw=data)
            templates.extend(t for t in page if isinstance(t, Mapping))
            paging = data.get("paging")
            cursors = paging.get("cursors") if isinstance(paging, Mapping) else None
            after = cursors.get("after") if isinstance(cursors, Mapping) else None
            # Meta leaves out `next` on the last page (the cursors may still be there)
            if not (isinstance(paging, Mapping) and paging.get("next") and isinstance(after, str)):
                return templates
            params = {**params, "after": after}

    async def create_template(
        self, waba_id: str, template: Mapping[str, Any], *, token: str | None = None
    ) -> Mapping[str, Any]:
        """Submit a template for review; Meta answers `{id, status, category}`."""
        url = f"{self._root}/{_path_id('waba_id', waba_id)}/message_templates"
        data = await self._request("POST", url, token=token, json=template)
        if not isinstance(data.get("id"), str):
            raise UnexpectedResponse("template creation answer has no id", raw=data)
        return data

    async def delete_template(
        self, waba_id: str, name: str, *, template_id: str | None = None, token: str | None = None
    ) -> None:
        """Delete a template by name (every language), or one language by its id."""
        url = f"{self._root}/{_path_id('waba_id', waba_id)}/message_templates"
        params = {"name": name, **({"hsm_id": _path_id("template_id", template_id)} if template_id else {})}
        data = await self._request("DELETE", url, token=token, params=params)
        if data.get("success") is not True:
            raise UnexpectedResponse("template deletion answer is not success=true", raw=data)

    # -- media ----------------------------------------------------------------------------

    async def upload_media(
        self,
        phone_number_id: str,
        content: bytes,
        *,
        mime_type: str,
        filename: str = "file",
        token: str | None = None,
    ) -> UploadedMedia:
        """Multipart upload; the id lives 30 days and can be sent with `MediaSource.by_id`."""
        messages.check_media_upload(mime_type, len(content))
        data = await self._request(
            "POST",
            self._url(phone_number_id, "media"),
            token=token,
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, content, mime_type)},
        )
        media_id = data.get("id")
        if not isinstance(media_id, str):
            raise UnexpectedResponse("upload answer has no id", raw=data)
        return UploadedMedia(id=media_id)

    async def get_media_url(
        self, media_id: str, *, phone_number_id: str | None = None, token: str | None = None
    ) -> MediaInfo:
        """`phone_number_id` makes Meta check the media belongs to that number."""
        params = (
            {"phone_number_id": _path_id("phone_number_id", phone_number_id)} if phone_number_id else None
        )
        url = f"{self._root}/{_path_id('media_id', media_id)}"
        return MediaInfo.from_response(await self._request("GET", url, token=token, params=params))

    async def download_media(
        self,
        media_id: str,
        *,
        url: str | None = None,
        phone_number_id: str | None = None,
        token: str | None = None,
    ) -> DownloadedMedia:
        """Download media by id. `url` (from a webhook's media object) skips the lookup when
        it is on a host that may see the token (`may_carry_token`), and is ignored otherwise;
        a 404 on the file URL means it expired (5 min): look it up again, once."""
        info: MediaInfo | None = None
        if url is not None and not self.may_carry_token(url):
            _logger.warning("media %s: ignoring a webhook url on a host that may not see the token", media_id)
            url = None
        if url is None:
            info = await self.get_media_url(media_id, phone_number_id=phone_number_id, token=token)
            url = info.url
        content, content_type = await self._fetch(url, token=token)
        if content is None:
            _logger.info("media %s url expired; fetching a fresh one", media_id)
            info = await self.get_media_url(media_id, phone_number_id=phone_number_id, token=token)
            content, content_type = await self._fetch(info.url, token=token)
        if content is None:
            raise MediaError(f"media {media_id} not found at a fresh url", http_status=404)
        mime_type = (info.mime_type if info else None) or content_type or "application/octet-stream"
        return DownloadedMedia(
            id=media_id, content=content, mime_type=mime_type, sha256=info.sha256 if info else None
        )

    def may_carry_token(self, url: str) -> bool:
        """True when `url` may receive a number's bearer token: the configured Graph API
        host itself, or, when that is Meta's, Meta's media CDN over https. A media url in a
        webhook is data from outside: anywhere else, sending the token would hand it out."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            return False
        origin = self._origin
        if (target.scheme, target.host, target.port) == (origin.scheme, origin.host, origin.port):
            return True
        return (
            self._origin.host == httpx.URL(DEFAULT_BASE_URL).host
            and target.scheme == "https"
            and target.host.endswith(_META_MEDIA_HOST_SUFFIX)
        )

    # -- transport ------------------------------------------------------------------------

    def _url(self, phone_number_id: str, edge: str) -> str:
        return f"{self._root}/{_path_id('phone_number_id', phone_number_id)}/{edge}"

    def _auth(self, token: str | None) -> dict[str, str]:
        chosen = token or self._token
        if not chosen:
            raise ValueError("no access token: pass token= to the call or to GraphAPI")
        return {"Authorization": f"Bearer {chosen}"}

    async def _request(
        self,
        method: str,
        url: str,
        *,
        token: str | None,
        json: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Mapping[str, Any]:
        headers = self._auth(token)
        with _transport_errors(f"{method} {url}"):
            response = await self._client.request(
                method, url, headers=headers, json=json, data=data, files=files, params=params
            )
        if response.is_error:
            error = error_from_response(response.status_code, response.content)
            _logger.warning("graph %s %s failed: %s (fbtrace_id=%s)", method, url, error, error.fbtrace_id)
            raise error
        try:
            parsed: object = response.json()
        except ValueError:
            parsed = None
        if not isinstance(parsed, Mapping):
            status = response.status_code
            raise UnexpectedResponse(
                f"{method} {url} answered {status} without a JSON object", http_status=status
            )
        return parsed

    async def _fetch(self, url: str, *, token: str | None) -> tuple[bytes | None, str | None]:
        """GET a media file URL with the bearer; (None, None) on 404 (expired URL)."""
        if not self.may_carry_token(url):
            raise MediaError("the media url is not on the Graph API's or Meta's media host")
        headers = self._auth(token)
        with _transport_errors("GET media"):
            async with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code == 404:
                    return None, None
                if response.is_error:
                    raise error_from_response(response.status_code, await response.aread())
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit():
                    self._check_size(int(declared))
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content.extend(chunk)
                    self._check_size(len(content))
                return bytes(content), response.headers.get("content-type")

    def _check_size(self, size: int) -> None:
        if size > self._download_limit:
            # The URL is not logged: it is a signed, bearer-only link to a user's file.
            raise MediaError(f"media download exceeds {self._download_limit} bytes")
