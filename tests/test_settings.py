"""Settings refuse, when they are loaded, values that would break a guarantee."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from zapbase.settings import GRAPH_CALL_MAX_S, PROVIDER_TIMEOUT_S, Settings


def test_the_defaults_keep_every_lease_above_its_calls() -> None:
    settings = Settings(_env_file=None)
    assert settings.zapbase_send_lease_s > GRAPH_CALL_MAX_S
    assert settings.zapbase_process_lease_s > PROVIDER_TIMEOUT_S


def test_a_send_lease_a_graph_call_can_outlast_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZAPBASE_SEND_LEASE_S", "45")
    refused = r"ZAPBASE_SEND_LEASE_S=45 must exceed 50 s.*send the same message"
    with pytest.raises(ValidationError, match=refused):
        Settings(_env_file=None)


def test_a_process_lease_a_provider_call_can_outlast_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZAPBASE_PROCESS_LEASE_S", "60")
    with pytest.raises(ValidationError, match=r"ZAPBASE_PROCESS_LEASE_S=60 must exceed 60 s"):
        Settings(_env_file=None)
