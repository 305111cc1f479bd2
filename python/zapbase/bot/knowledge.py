"""Knowledge passages for a reply: `match_knowledge` with the embedder that wrote the
tenant's vectors (vectors of different embedders are not comparable)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio.to_thread

from zapbase.bot.config import Bot
from zapbase.bot.prompt import passages
from zapbase.db.pool import Connect
from zapbase.knowledge.embedders import EmbedderUnavailable, MeteredEmbedder, OpenAIEmbedder, select_embedder
from zapbase.knowledge.search import search_knowledge
from zapbase.whatsapp.inbound import InboundMessage

__all__ = ["Knowledge"]

_logger = logging.getLogger(__name__)

# The embedder of most of the ready knowledge the bot may search (tenant-wide or its own).
_MODEL = """
select s.embedding_model from public.knowledge_sources s
 where s.tenant_id = %s and s.status = 'ready' and s.embedding_model is not null
   and (s.bot_id is null or s.bot_id = %s)
 group by 1 order by sum(s.chunk_count) desc limit 1
"""


class Knowledge:
    """Finds the passages a bot answers from.

    Parameters:
        connect: lends connections to the reads, the search and the query's usage row.
        openai: builds the OpenAI-compatible embedder of a model (`openai(model=...)`)
            when a key is configured (None: OpenAI-embedded knowledge is searched by full text only).
        limit: passages per reply.
    """

    def __init__(
        self, *, connect: Connect, openai: Callable[..., OpenAIEmbedder] | None = None, limit: int = 4
    ) -> None:
        self._connect = connect
        self._openai = openai
        self._limit = limit
        self._embedders: dict[str, MeteredEmbedder | None] = {}

    async def _embedder(self, name: str) -> MeteredEmbedder | None:
        if name not in self._embedders:
            provider, _, model = name.partition(":")
            openai = self._openai(model=model) if self._openai is not None and provider == "openai" else None
            try:
                # MiniLM takes seconds to load: not on the event loop
                embedder = await anyio.to_thread.run_sync(lambda: select_embedder(name, openai=openai))
            except EmbedderUnavailable as exc:
                _logger.warning("knowledge embedded with %s is searched by full text only: %s", name, exc)
                self._embedders[name] = None
            else:
                self._embedders[name] = MeteredEmbedder(connect=self._connect, embedder=embedder)
        return self._embedders[name]

    async def passages(self, bot: Bot, message: InboundMessage, text: str) -> tuple[str, ...]:
        async with self._connect() as conn:
            row = await (await conn.execute(_MODEL, (message.tenant_id, bot.id))).fetchone()
        if row is None:
            return ()  # nothing ready to search
        embedder = await self._embedder(row["embedding_model"])
        matches = await search_knowledge(
            self._connect, embedder, message.tenant_id, text, bot_id=bot.id, limit=self._limit
        )
        return passages(matches)
