"""The simulator's memory: numbers, what the worker sent (the phones' inbox), media, faults.

One `Simulator` per app instance; nothing lives at module level, so tests can run several
side by side. The clock is injected so tests can expire media URLs without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zapbase.simulator.faults import CannedError, bare_http_error, meta_error
from zapbase.simulator.templates import TemplateStore

__all__ = [
    "DEMO_APP_SECRET",
    "DEMO_NUMBER",
    "ReadMark",
    "ReceivedMessage",
    "SimNumber",
    "Simulator",
    "SimulatorConfig",
    "StoredMedia",
]

# The 24 h customer-service window [M:send].
WINDOW_S = 24 * 3600.0
# Not a secret: the simulator's demo configuration, only ever used against localhost.
DEMO_APP_SECRET = "zapbase-simulator-app-secret"  # noqa: S105


@dataclass(frozen=True, slots=True, kw_only=True)
class SimNumber:
    """A business phone number registered on the simulated WABA."""

    phone_number_id: str
    display_phone_number: str  # digits, no "+", as webhooks carry it
    access_token: str
    waba_id: str = "102290129340398"


DEMO_NUMBER = SimNumber(
    phone_number_id="106540352242922",
    display_phone_number="5511999990000",
    access_token="zapbase-simulator-token",  # noqa: S106
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    """
    **Parameters**

    * **numbers** - business numbers the simulator accepts, each with its own token.
    * **app_secret** - key of the `X-Hub-Signature-256` of the webhooks it posts.
    * **webhook_url** - where simulated users' messages and statuses are POSTed.
    * **media_url_ttl_s** - life of a media download URL (Meta: 5 minutes).
    * **enforce_window** - refuse free-form sends (131047) when the user has not
      written in 24 h; off by default so tests can send without a prior inbound message.
    * **auto_statuses** - after each accepted send, post `sent` and `delivered` statuses.
    * **webhook_retry_s** - how long an automatic status that got no 2xx is posted again,
      at once and then with growing pauses (Meta: for up to 7 days).
    * **template_review** - the status a new template gets at once (Meta: PENDING,
      APPROVED or REJECTED).
    """

    numbers: Sequence[SimNumber] = (DEMO_NUMBER,)
    app_secret: str = DEMO_APP_SECRET
    webhook_url: str | None = None
    media_url_ttl_s: float = 300.0
    enforce_window: bool = False
    auto_statuses: bool = False
    webhook_retry_s: float = 30.0
    template_review: str = "APPROVED"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMessage:
    """One message the worker sent, as it reached the simulated user's phone."""

    wamid: str
    phone_number_id: str
    wa_id: str | None  # digits when addressed with `to`
    user_id: str | None  # business-scoped user id when addressed with `recipient`
    type: str
    body: Mapping[str, Any] = field(repr=False)  # the request JSON, unchanged
    received_at: float

    @property
    def content(self) -> Mapping[str, Any]:
        """The object under the message's type key, e.g. `{"body": ...}` for text."""
        value = self.body.get(self.type)
        return value if isinstance(value, Mapping) else {}

    @property
    def callback_data(self) -> str | None:
        """The send's `biz_opaque_callback_data`, echoed in each of its status webhooks."""
        return _str(self.body.get("biz_opaque_callback_data"))

    @property
    def text(self) -> str | None:
        """What the user reads: text body, interactive body or media caption."""
        content = self.content
        if self.type == "text":
            return _str(content.get("body"))
        if self.type == "interactive":
            body = content.get("body")
            return _str(body.get("text")) if isinstance(body, Mapping) else None
        return _str(content.get("caption"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadMark:
    phone_number_id: str
    message_id: str
    typing_indicator: bool
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMedia:
    id: str
    owner: str  # phone_number_id that uploaded or received it
    content: bytes = field(repr=False)
    mime_type: str
    filename: str | None
    sha256: str  # base64 of the SHA-256 digest, as in webhook media objects

    @property
    def file_size(self) -> int:
        return len(self.content)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def new_wamid() -> str:
    return "wamid." + base64.b64encode(b"ZAPBASE-SIM:" + secrets.token_bytes(18)).decode()


class Simulator:
    """State and rules of the local WhatsApp Cloud API stand-in (see `zapbase.simulator`)."""

    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], float] = time.time) -> None:
        if not config.numbers:
            raise ValueError("the simulator needs at least one number")
        self.config = config
        self.clock = clock
        self._numbers = {n.phone_number_id: n for n in config.numbers}
        self._inbox: list[ReceivedMessage] = []
        self._reads: list[ReadMark] = []
        self._media: dict[str, StoredMedia] = {}
        self._urls: dict[str, tuple[str, float]] = {}
        self._send_faults: dict[tuple[str | None, str | None], deque[CannedError]] = {}
        self._download_faults: dict[str, deque[int]] = {}
        self._last_inbound: dict[tuple[str, str], float] = {}
        self.templates = TemplateStore(config.template_review)

    # -- numbers and records ----------------------------------------------------------

    def number(self, phone_number_id: str) -> SimNumber | None:
        return self._numbers.get(phone_number_id)

    def waba_tokens(self, waba_id: str) -> set[str]:
        """Tokens of the numbers of a WABA: each may manage its templates."""
        return {n.access_token for n in self.config.numbers if n.waba_id == waba_id}

    @property
    def default_number(self) -> SimNumber:
        return self.config.numbers[0]

    @property
    def inbox(self) -> tuple[ReceivedMessage, ...]:
        """Every message accepted so far, oldest first."""
        return tuple(self._inbox)

    @property
    def reads(self) -> tuple[ReadMark, ...]:
        return tuple(self._reads)

    def messages_to(self, wa_id: str, *, phone_number_id: str | None = None) -> list[ReceivedMessage]:
        digits = wa_id.removeprefix("+")
        return [
            m
            for m in self._inbox
            if digits in (m.wa_id, m.user_id)
            and (phone_number_id is None or m.phone_number_id == phone_number_id)
        ]

    def find(self, wamid: str) -> ReceivedMessage | None:
        return next((m for m in self._inbox if m.wamid == wamid), None)

    def accept(
        self,
        phone_number_id: str,
        body: Mapping[str, Any],
        *,
        wa_id: str | None,
        user_id: str | None,
    ) -> ReceivedMessage:
        message = ReceivedMessage(
            wamid=new_wamid(),
            phone_number_id=phone_number_id,
            wa_id=wa_id,
            user_id=user_id,
            type=str(body["type"]),
            body=body,
            received_at=self.clock(),
        )
        self._inbox.append(message)
        return message

    def mark_read(self, phone_number_id: str, message_id: str, *, typing: bool) -> None:
        self._reads.append(
            ReadMark(
                phone_number_id=phone_number_id,
                message_id=message_id,
                typing_indicator=typing,
                at=self.clock(),
            )
        )

    # -- customer-service window --------------------------------------------------------

    def note_inbound(self, phone_number_id: str, wa_id: str) -> None:
        self._last_inbound[(phone_number_id, wa_id)] = self.clock()

    def window_open(self, phone_number_id: str, wa_id: str) -> bool:
        last = self._last_inbound.get((phone_number_id, wa_id))
        return last is not None and self.clock() - last < WINDOW_S

    # -- media ----------------------------------------------------------------------------

    def store_media(
        self, *, owner: str, content: bytes, mime_type: str, filename: str | None = None
    ) -> StoredMedia:
        media = StoredMedia(
            id=str(10**15 + secrets.randbelow(9 * 10**15)),
            owner=owner,
            content=content,
            mime_type=mime_type,
            filename=filename,
            sha256=base64.b64encode(hashlib.sha256(content).digest()).decode(),
        )
        self._media[media.id] = media
        return media

    def media(self, media_id: str) -> StoredMedia | None:
        return self._media.get(media_id)

    def issue_url(self, media_id: str, base_url: str) -> str:
        token = secrets.token_urlsafe(16)
        self._urls[token] = (media_id, self.clock() + self.config.media_url_ttl_s)
        return f"{base_url.rstrip('/')}/_simulator/media/{token}"

    def open_url(self, token: str) -> StoredMedia | None:
        """The media behind a download token, or None once it expired."""
        entry = self._urls.get(token)
        if entry is None or self.clock() >= entry[1]:
            return None
        return self._media.get(entry[0])

    # -- failure injection ----------------------------------------------------------------

    def fail_next_send(
        self,
        code: int | None = None,
        *,
        http_status: int | None = None,
        phone_number_id: str | None = None,
        to: str | None = None,
        times: int = 1,
        details: str | None = None,
    ) -> CannedError:
        """Answer the next `times` sends (optionally only from a number / to a user) with
        Meta's error body for `code`, or with a bare HTML `http_status` when `code` is None."""
        if code is None:
            if http_status is None:
                raise ValueError("give a Meta error code, an HTTP status, or both")
            fault = bare_http_error(http_status)
        else:
            fault = meta_error(code, http_status=http_status, details=details)
        key = (phone_number_id, to.removeprefix("+") if to else None)
        self._send_faults.setdefault(key, deque()).extend([fault] * times)
        return fault

    def take_send_fault(self, phone_number_id: str, to: str | None) -> CannedError | None:
        for key in ((phone_number_id, to), (phone_number_id, None), (None, to), (None, None)):
            queue = self._send_faults.get(key)
            if queue:
                return queue.popleft()
        return None

    def fail_next_download(self, media_id: str, *, http_status: int = 404, times: int = 1) -> None:
        """Make the next `times` fetches of any URL of `media_id` fail (404 = expired URL)."""
        self._download_faults.setdefault(media_id, deque()).extend([http_status] * times)

    def take_download_fault(self, media_id: str) -> int | None:
        queue = self._download_faults.get(media_id)
        return queue.popleft() if queue else None
