"""Fixtures of the AI gateway tests (helpers live in ai_support.py)."""

from __future__ import annotations

import pytest
from ai_support import Ledger

from support import Db


@pytest.fixture
def ledger(db: Db) -> Ledger:
    return Ledger(db)
