"""The simulator's message templates per WABA: list (paged), create, delete, in Meta's shapes.

GET /{waba_id}/message_templates answers `{"data": [...], "paging": {"cursors": {"before",
"after"}, "next"}}` with `next` only while more pages follow; POST answers `{id, status,
category}`; DELETE ?name=…[&hsm_id=…] answers `{"success": true}`. Review is instant: a new
template gets `SimulatorConfig.template_review` (APPROVED by default).
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Mapping
from typing import Any

from zapbase.simulator.faults import CannedError, meta_error

__all__ = ["TemplateStore", "cursor", "uncursor"]

_NAME = re.compile(r"[a-z0-9_]{1,512}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Za-z]{2,4})?")
_CATEGORIES = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})


def cursor(index: int) -> str:
    return base64.b64encode(f"sim:{index}".encode()).decode()


def uncursor(value: str) -> int | None:
    try:
        text = base64.b64decode(value.encode(), validate=True).decode()
    except ValueError:
        return None
    prefix, _, number = text.partition(":")
    return int(number) if prefix == "sim" and number.isdigit() else None


class TemplateStore:
    """Templates by WABA, in creation order (the order Meta's list keeps)."""

    def __init__(self, review: str = "APPROVED") -> None:
        self._review = review
        self._by_waba: dict[str, list[dict[str, Any]]] = {}

    def all(self, waba_id: str) -> list[dict[str, Any]]:
        return list(self._by_waba.get(waba_id, ()))

    def find(self, template_id: str) -> dict[str, Any] | None:
        return next((t for ts in self._by_waba.values() for t in ts if t["id"] == template_id), None)

    def create(self, waba_id: str, body: Mapping[str, Any]) -> dict[str, Any] | CannedError:
        name, language, category = body.get("name"), body.get("language"), body.get("category")
        components = body.get("components")
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            return meta_error(100, details="name: lower-case letters, digits and underscores")
        if not (isinstance(language, str) and _LANGUAGE.fullmatch(language)):
            return meta_error(100, details="language is required (e.g. pt_BR)")
        if not (isinstance(category, str) and category.upper() in _CATEGORIES):
            return meta_error(100, details="category must be MARKETING, UTILITY or AUTHENTICATION")
        if not isinstance(components, list) or not any(
            isinstance(c, Mapping) and str(c.get("type", "")).upper() == "BODY" for c in components
        ):
            return meta_error(100, details="components must include a BODY")
        templates = self._by_waba.setdefault(waba_id, [])
        if any(t["name"] == name and t["language"] == language for t in templates):
            return meta_error(
                100, subcode=2388024, details=f"Content in {language} already exists for {name}"
            )
        template = {
            "id": str(10**15 + secrets.randbelow(9 * 10**15)),
            "name": name,
            "language": language,
            "category": category.upper(),
            "status": self._review,
            "components": components,
            "parameter_format": str(body.get("parameter_format") or "POSITIONAL").upper(),
            "quality_score": {"score": "UNKNOWN"},
            "rejected_reason": "NONE",
        }
        templates.append(template)
        return template

    def delete(self, waba_id: str, name: str, hsm_id: str | None) -> bool:
        """Every language of `name`, or only the one with id `hsm_id`; False: nothing matched."""
        templates = self._by_waba.get(waba_id, [])
        keep = [t for t in templates if not (t["name"] == name and hsm_id in (None, t["id"]))]
        self._by_waba[waba_id] = keep
        return len(keep) < len(templates)

    def set_status(self, template_id: str, status: str) -> dict[str, Any] | None:
        template = self.find(template_id)
        if template is not None:
            template["status"] = status
        return template
