"""Errors every part of Zapbase shares.

ZapbaseError            base: a message for a human, naming the cause and the fix
├── DatabaseError       the database could not be started, reached or migrated
├── WhatsAppError       a Graph API request failed (tree in zapbase.whatsapp.errors)
├── ProviderError       an AI provider call failed (tree in zapbase.ai.errors)
└── StorageError        an object could not be stored or read (zapbase.storage)
"""

from __future__ import annotations


class ZapbaseError(Exception):
    """An expected failure: the CLI prints its message, without a traceback."""


class DatabaseError(ZapbaseError):
    """The database could not be started, reached or migrated."""
