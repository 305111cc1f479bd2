"""A published flow graph as the interpreter reads it (the schema is documented at the top of
the flows migration, which validated it before it was published)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Block", "Graph"]


@dataclass(frozen=True, slots=True)
class Block:
    id: str
    type: str
    data: Mapping[str, Any]

    def text(self, key: str = "text") -> str:
        value = self.data.get(key)
        return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Graph:
    blocks: Mapping[str, Block]
    edges: Mapping[tuple[str, str], str]  # (block, port) -> next block
    start: str

    @classmethod
    def from_json(cls, graph: Mapping[str, Any]) -> Graph:
        blocks = {str(b["id"]): Block(str(b["id"]), str(b["type"]), b) for b in graph.get("blocks", [])}
        edges = {(str(e["from"]), str(e.get("port") or "next")): str(e["to"]) for e in graph.get("edges", [])}
        for block in blocks.values():
            if block.type == "jump":
                edges[(block.id, "next")] = block.text("target")
        start = next(b.id for b in blocks.values() if b.type == "start")
        return cls(blocks=blocks, edges=edges, start=start)

    def follow(self, block: str, port: str) -> str | None:
        """The block a port leads to; None when nothing is connected (or it leads nowhere known)."""
        target = self.edges.get((block, port))
        return target if target in self.blocks else None
