"""Helpers of the flow tests: flows written the way the editor writes them (as the demo
tenant's owner, through PostgREST-like requests) and published through publish_flow."""

from __future__ import annotations

import json
import uuid
from typing import Any

from support import Db

TENANT = "00000000-0000-4000-b000-000000000001"
OWNER = "00000000-0000-4000-a000-000000000001"
AGENT = "00000000-0000-4000-a000-000000000002"
TEAM = "00000000-0000-4000-d000-000000000001"


def graph(*blocks: dict[str, Any], edges: list[tuple[str, str] | tuple[str, str, str]]) -> dict[str, Any]:
    """A graph from blocks and (from, to[, port]) edges."""
    return {
        "blocks": list(blocks),
        "edges": [{"from": e[0], "to": e[1], "port": e[2] if len(e) > 2 else "next"} for e in edges],
    }


def create_flow(db: Db, name: str, body: dict[str, Any], *, triggers: tuple[tuple[str, str | None], ...] = (),
                publish: bool = True, **flow: Any) -> tuple[uuid.UUID, uuid.UUID]:
    """A flow with a draft holding `body`, its triggers ((kind, value) or (kind, value, match)),
    published unless told otherwise: (flow id, version id)."""
    columns = {"tenant_id": TENANT, "name": name, **flow}
    with db.as_user(OWNER) as s:
        flow_id: uuid.UUID = s.value(
            f"insert into public.flows ({', '.join(columns)}) values ({', '.join(['%s'] * len(columns))})"
            " returning id", list(columns.values()))
        version_id: uuid.UUID = s.value(
            "insert into public.flow_versions (tenant_id, flow_id, graph) values (%s, %s, %s) returning id",
            (TENANT, flow_id, json.dumps(body)))
        for trigger in triggers:
            kind, value, *match = trigger
            s.all("insert into public.flow_triggers (tenant_id, flow_id, kind, value, match)"
                  " values (%s, %s, %s, %s, %s)",
                  (TENANT, flow_id, kind, value, match[0] if match else "exact"))
        if publish:
            s.all("select public.publish_flow(%s)", (version_id,))
    return flow_id, version_id
