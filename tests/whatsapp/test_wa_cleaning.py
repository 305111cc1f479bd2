"""The webhook route's cleaning of strings jsonb refuses, on the cases the edge function's
twin is tested with (edge/whatsapp-webhook/jsonb_safe_cases.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from zapbase.whatsapp.cleaning import jsonb_safe, may_need_cleaning

CASES = json.loads((Path(__file__).parents[2] / "edge/whatsapp-webhook/jsonb_safe_cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_refused_strings_become_the_replacement_character(case: dict[str, Any]) -> None:
    cleaned, strings = jsonb_safe(json.loads(case["json"]))
    assert (cleaned, strings) == (case["clean"], case["strings"])
    assert may_need_cleaning(case["json"]) or strings == 0
