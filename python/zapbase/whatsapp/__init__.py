"""WhatsApp Cloud API I/O that needs no database: Graph client, payload builders, errors,
webhook signatures."""

from __future__ import annotations

from zapbase.whatsapp.api import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DownloadedMedia,
    GraphAPI,
    MediaInfo,
    SentMessage,
    UploadedMedia,
)
from zapbase.whatsapp.errors import ErrorKind, MessageValidationError, WhatsAppError
from zapbase.whatsapp.messages import (
    ListRow,
    ListSection,
    MediaSource,
    MediaType,
    Recipient,
    ReplyButton,
)

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "DownloadedMedia",
    "ErrorKind",
    "GraphAPI",
    "ListRow",
    "ListSection",
    "MediaInfo",
    "MediaSource",
    "MediaType",
    "MessageValidationError",
    "Recipient",
    "ReplyButton",
    "SentMessage",
    "UploadedMedia",
    "WhatsAppError",
]
