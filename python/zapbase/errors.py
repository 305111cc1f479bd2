"""Errors every part of Zapbase shares.

ZapbaseError            base: a message for a human, naming the cause and the fix
└── DatabaseError       the database could not be started, reached or migrated
"""

from __future__ import annotations


class ZapbaseError(Exception):
    """An expected failure: the CLI prints its message, without a traceback."""


class DatabaseError(ZapbaseError):
    """The database could not be started, reached or migrated."""
