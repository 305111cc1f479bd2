"""`zapbase knowledge`: a tenant's knowledge base from the command line.

    zapbase knowledge add seed/knowledge/*.md --tenant loja-demo
    zapbase knowledge list
    zapbase knowledge search "qual o prazo de entrega?"
    zapbase knowledge remove 6f1c...

Talks to the database `zapbase db` uses (DATABASE_URL, else the embedded one) as the
worker does: a session in the role `service_role`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, TypeVar

import anyio
import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from zapbase.db.pool import Connect, borrow, connect, transaction
from zapbase.db.target import DatabaseTarget
from zapbase.errors import ZapbaseError
from zapbase.knowledge.embedders import (
    Embedder,
    EmbedderUnavailable,
    MeteredEmbedder,
    OpenAIEmbedder,
    select_embedder,
)
from zapbase.knowledge.parsers import MEDIA_TYPES
from zapbase.knowledge.search import Match, search_knowledge
from zapbase.knowledge.seed import DEMO_TENANT
from zapbase.knowledge.sources import SourceInfo, list_sources, remove_source, resolve_tenant
from zapbase.knowledge.store import IngestResult, KnowledgeService
from zapbase.settings import Settings

__all__ = ["knowledge_app"]

knowledge_app = typer.Typer(help="A tenant's knowledge base: add files, list, search, remove.",
                     no_args_is_help=True)  # fmt: skip

T = TypeVar("T")
TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Tenant slug or id.")]
EmbedderOption = Annotated[
    str | None,
    typer.Option(
        "--embedder", "-e",
        help="local:hashing-v1, local:all-MiniLM-L6-v2 or openai:<model>; default: the best available.",
    ),
]  # fmt: skip
_STORED_MODEL = (
    "select embedding_model from public.document_chunks where tenant_id = %s and embedding_model is not null"
    " group by 1 order by count(*) desc limit 1"
)


@dataclass
class _Env:
    connect: Connect
    http: httpx.AsyncClient
    settings: Settings

    def embedder(self, name: str | None) -> Embedder:
        openai = None
        if self.settings.openai_api_key is not None:
            openai = OpenAIEmbedder(
                api_key=self.settings.openai_api_key.get_secret_value(), client=self.http,
                base_url=self.settings.openai_base_url, model=self.settings.openai_embedding_model,
            )  # fmt: skip
        return select_embedder(name or self.settings.zapbase_embedder, openai=openai)


@asynccontextmanager
async def _environment() -> AsyncIterator[_Env]:
    settings = Settings()
    url = DatabaseTarget.from_settings(settings).url
    async with await connect(url) as conn, httpx.AsyncClient() as http:
        yield _Env(borrow(conn), http, settings)


def _run(command: Callable[[_Env], Awaitable[T]]) -> T:
    """Run an async command with a database connection; ZapbaseError → message, exit 1."""

    async def main() -> T:
        async with _environment() as env:
            return await command(env)

    try:
        return anyio.run(main)
    except ZapbaseError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


def _files(paths: list[Path]) -> list[Path]:
    """Files to add: those named, and the supported files inside the folders named."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_TYPES)
        elif path.suffix.lower() in MEDIA_TYPES:
            files.append(path)
        else:
            known = ", ".join(sorted(MEDIA_TYPES))
            raise typer.BadParameter(f"{path}: unsupported file type (use one of {known})")
    return files


@knowledge_app.command("add")
def add(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files (.md .txt .html .pdf) or folders.")],
    tenant: TenantOption = DEMO_TENANT,
    bot: Annotated[uuid.UUID | None, typer.Option("--bot", help="Only this bot searches them.")] = None,
    embedder: EmbedderOption = None,
) -> None:
    """Parse, chunk, embed and store files; files already there (same content) are skipped."""
    files = _files(paths)
    console = Console()

    async def command(env: _Env) -> list[IngestResult]:
        tenant_id = await resolve_tenant(env.connect, tenant)
        service = KnowledgeService(connect=env.connect, embedder=env.embedder(embedder))
        results = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("ingesting", total=len(files))
            for path in files:
                progress.update(task, description=path.name)
                results.append(await service.add_file(tenant_id, path, bot_id=bot))
                progress.advance(task)
        return results

    results = _run(command)
    table = Table(title=f"knowledge of {tenant}")
    for column in ("file", "result", "chunks", "embedded", "tokens", "cost USD"):
        table.add_column(column, justify="left" if column in ("file", "result") else "right")
    for path, r in zip(files, results, strict=True):
        outcome = f"[red]failed: {r.error}[/]" if r.error else r.action
        table.add_row(str(path), outcome, str(r.chunks), str(r.embedded), str(r.tokens), f"{r.cost_usd:.6f}")
    console.print(table)
    total = sum((r.cost_usd for r in results), Decimal(0))
    console.print(f"{len(results)} file(s), embedding cost USD {total:.6f}", highlight=False)
    if any(r.action == "failed" for r in results):
        raise typer.Exit(1)


@knowledge_app.command("list")
def list_(tenant: TenantOption = DEMO_TENANT) -> None:
    """The tenant's knowledge sources and their state."""

    async def command(env: _Env) -> list[SourceInfo]:
        return await list_sources(env.connect, await resolve_tenant(env.connect, tenant))

    sources = _run(command)
    table = Table(title=f"knowledge of {tenant}")
    for column in ("id", "title", "status", "chunks", "tokens", "model", "bot"):
        table.add_column(column, justify="right" if column in ("chunks", "tokens") else "left")
    for s in sources:
        status = s.status if s.error is None else f"{s.status}: {s.error}"
        table.add_row(str(s.id), s.title, status, str(s.chunk_count), str(s.token_count),
                      s.embedding_model or "", str(s.bot_id or "todos"))  # fmt: skip
    Console().print(table)


@knowledge_app.command("remove")
def remove(
    source_id: Annotated[uuid.UUID, typer.Argument(help="Source id (see `zapbase knowledge list`).")],
    tenant: TenantOption = DEMO_TENANT,
) -> None:
    """Remove a source and its chunks."""

    async def command(env: _Env) -> bool:
        return await remove_source(env.connect, await resolve_tenant(env.connect, tenant), source_id)

    if not _run(command):
        Console(stderr=True).print(f"[bold red]error:[/] tenant {tenant} has no source {source_id}")
        raise typer.Exit(1)
    Console().print(f"removed {source_id}")


@knowledge_app.command("search")
def search(
    question: Annotated[str, typer.Argument(help="The question, as a customer would ask it.")],
    tenant: TenantOption = DEMO_TENANT,
    bot: Annotated[uuid.UUID | None, typer.Option("--bot", help="Add this bot's own sources.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 5,
    embedder: EmbedderOption = None,
) -> None:
    """Hybrid search: the fused ranking with each chunk's full-text and vector ranks."""
    console = Console()

    async def command(env: _Env) -> tuple[str | None, list[Match]]:
        tenant_id = await resolve_tenant(env.connect, tenant)
        name = embedder
        if name is None:  # like with like: the model that wrote most of the tenant's vectors
            async with transaction(env.connect) as conn:
                row = await (await conn.execute(_STORED_MODEL, (tenant_id,))).fetchone()
            name = row["embedding_model"] if row else None
        metered = None
        if name is not None:
            try:
                metered = MeteredEmbedder(connect=env.connect, embedder=env.embedder(name))
            except EmbedderUnavailable as exc:
                console.print(f"[yellow]full text only:[/] {exc}", highlight=False)
        matches = await search_knowledge(env.connect, metered, tenant_id, question, bot_id=bot, limit=limit)
        return (metered.embedder.name if metered else None), matches

    model, matches = _run(command)
    table = Table(title=f"{question!r} · vectors: {model or 'none'}")
    for column in ("rank", "score", "full-text rank", "vector rank", "heading"):
        table.add_column(column, justify="left" if column == "heading" else "right", no_wrap=True)
    table.add_column("snippet", no_wrap=True, overflow="ellipsis", max_width=90)  # one line per result
    for m in matches:
        snippet = " ".join(m.content.split())
        table.add_row(
            str(m.rank), f"{m.score:.4f}", _rank(m.fts_position), _rank(m.semantic_position),
            " › ".join(m.heading_path) or m.title, snippet,
        )  # fmt: skip
    console.print(table)
    if not matches:
        console.print("nothing found")


@knowledge_app.command("reembed")
def reembed(
    tenant: TenantOption = DEMO_TENANT,
    all_tenants: Annotated[bool, typer.Option("--all-tenants", help="Every tenant, not just one.")] = False,
    embedder: EmbedderOption = None,
) -> None:
    """Move every stored chunk to this embedder (after changing embedders)."""

    async def command(env: _Env) -> str:
        tenant_id = None if all_tenants else await resolve_tenant(env.connect, tenant)
        service = KnowledgeService(connect=env.connect, embedder=env.embedder(embedder))
        result = await service.reembed(tenant_id)
        return f"{result.chunks} chunk(s) re-embedded, {result.tokens} tokens, USD {result.cost_usd:.6f}"

    Console().print(_run(command), highlight=False)


def _rank(position: int | None) -> str:
    return "—" if position is None else str(position)
