"""`zapbase up`, `zapbase simulator`, `zapbase demo`, `zapbase chat`: the worker from the shell.

    zapbase up                 database, migrations, seed, then the worker until Ctrl-C
    zapbase up --simulator     the same, sending to a WhatsApp simulator in this process
    zapbase simulator          the simulator alone (GRAPH_API_BASE_URL=http://127.0.0.1:8787)
    zapbase demo               a scripted conversation of the demo tenant, then its rows
    zapbase chat               be the customer yourself, in the terminal

`demo` and `chat` run the whole pipeline in one process on free local ports: simulator
(Meta's side) → signed webhook → worker HTTP API → whatsapp_ingest → processor → bot
reply queued → sender → simulator's phone. Nothing leaves localhost.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Annotated

import anyio
import anyio.to_thread
import typer
from rich.console import Console
from rich.logging import RichHandler

from zapbase.db.embedded import port_is_free
from zapbase.db.migrate import mask_password
from zapbase.db.target import DatabaseTarget
from zapbase.demo import chat_session, coaching_standin, demo_script, new_customer, render_demo
from zapbase.errors import ZapbaseError
from zapbase.knowledge.seed import ingest_seed_knowledge
from zapbase.local_stack import local_stack
from zapbase.settings import Settings
from zapbase.simulator import (
    DEMO_NUMBER,
    serve,
)
from zapbase.worker.http import webhook_path
from zapbase.worker.runner import Runner

__all__ = ["register"]

console = Console()
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show the worker's logs.")]


def _logging(level: int) -> None:
    logging.basicConfig(
        level=level,
        format="%(name)s: %(message)s",
        datefmt="[%X]",
        force=True,
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True)],
    )


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


def _database(settings: Settings) -> DatabaseTarget:
    """Database, migrations, seed and the demo tenant's knowledge base (unchanged files skip)."""
    target = DatabaseTarget.from_settings(settings)
    try:
        applied = target.setup()
        knowledge = ingest_seed_knowledge(target.url, settings.zapbase_project_dir)
    except ZapbaseError as exc:
        raise _fail(str(exc)) from None
    applied_text = "seed and demo knowledge base applied" if knowledge is not None else "seed applied"
    console.print(f"database {mask_password(target.url)} ({len(applied)} migration(s) applied,"
                  f" {applied_text})", highlight=False)  # fmt: skip
    return target


def _check_port(port: int, what: str, variable: str) -> None:
    if not port_is_free(port):
        raise _fail(f"port {port} ({what}) is already in use; choose another with {variable}=...")


def up(
    with_simulator: Annotated[
        bool, typer.Option("--simulator", help="Run the WhatsApp simulator in this process and send to it.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Start the database (embedded unless DATABASE_URL), migrate, seed, and run the worker:
    HTTP API (WhatsApp and Hotmart webhooks), inbound processor (bots and flows), outbound sender,
    webhook deliverer, campaign loop, automation loop, alert mailer (with ZAPBASE_SMTP_HOST) and
    job scheduler, until Ctrl-C."""
    settings = Settings()
    _logging(logging.DEBUG if verbose else logging.INFO)
    _check_port(settings.zapbase_http_port, "worker HTTP API", "ZAPBASE_HTTP_PORT")
    _database(settings)
    base = f"http://{settings.zapbase_http_host}:{settings.zapbase_http_port}"
    if with_simulator:
        _check_port(settings.zapbase_simulator_port, "simulator", "ZAPBASE_SIMULATOR_PORT")

        async def stack_until_stopped() -> None:
            async with local_stack(
                settings,
                http_port=settings.zapbase_http_port,
                simulator_port=settings.zapbase_simulator_port,
                handle_signals=True,
            ) as stack:
                console.print(f"WhatsApp simulator on {stack.simulator_url} (local stand-in, not Meta)")
                await stack.stopped.wait()

        main = stack_until_stopped
    else:
        runner = Runner(settings)
        main = runner.run
    console.print(f"worker on {base}: webhooks {base}{webhook_path()} (the platform's Meta app),"
                  f" {base}{webhook_path('<phone_number_id>')} (a tenant's own app),"
                  f" {base}/readyz, {base}/metrics")
    if not with_simulator:
        graph = settings.graph_api_base_url
        console.print(f"sending to {graph} (GRAPH_API_BASE_URL; --simulator stays local)", highlight=False)
    console.print("Ctrl-C stops it; in-flight messages are finished first.")
    # Ctrl-C before the runner took over the signals (e.g. while the database starts).
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)
    console.print("worker stopped")


def simulator(
    port: Annotated[int | None, typer.Option(help="Port (default ZAPBASE_SIMULATOR_PORT, 8787).")] = None,
    webhook_url: Annotated[
        str | None, typer.Option(help="Where simulated users' webhooks go (default: the worker's URL).")
    ] = None,
    enforce_window: Annotated[
        bool, typer.Option(help="Refuse free-form sends outside 24 h (131047).")
    ] = False,
) -> None:
    """Serve the local WhatsApp Cloud API simulator; point GRAPH_API_BASE_URL at it."""
    settings = Settings()
    port = port or settings.zapbase_simulator_port
    # The simulator plays the demo number's own Meta app: its callback URL names the number.
    base = f"http://{settings.zapbase_http_host}:{settings.zapbase_http_port}"
    url = webhook_url or base + webhook_path(DEMO_NUMBER.phone_number_id)
    _check_port(port, "simulator", "--port")
    console.print(f"WhatsApp simulator (local stand-in, not Meta) on http://127.0.0.1:{port}")
    console.print(f"  worker: GRAPH_API_BASE_URL=http://127.0.0.1:{port} zapbase up", highlight=False)
    console.print(f"  webhooks → {url}; users write with POST /_simulator/users/<wa_id>/messages",
                  highlight=False)  # fmt: skip
    serve(port=port, webhook_url=url, enforce_window=enforce_window, auto_statuses=True, log_level="warning")


def demo(verbose: VerboseOption = False) -> None:
    """Play a short scripted conversation with the demo tenant's bot through the whole
    pipeline (questions answered from the knowledge base, a voice note, a button reply), then
    its chapters: the inbox (queue, transfer, note, CSAT), an approved automation, the support
    desk and its SLA, an order-tracking flow, a Hotmart purchase, a paced campaign and sales
    coaching (a call analysed, an OKR, a stuck deal's alert, a chat search: the AI is a local
    stand-in); prints the transcripts and the rows; its events go, signed, to a receiver on localhost."""
    # the deliverer may call that receiver (http, loopback): local development only
    settings = Settings().model_copy(update={"zapbase_webhooks_local_mode": True})
    _logging(logging.INFO if verbose else logging.WARNING)
    target = _database(settings)

    async def main() -> None:
        started = time.perf_counter()
        async with local_stack(settings, ai_standin=coaching_standin()) as stack:
            console.print(f"worker {stack.runner.http_url} · WhatsApp simulator {stack.simulator_url} "
                          "(local stand-in, not Meta)", highlight=False)  # fmt: skip
            result = await demo_script(stack, target.url, wa_id=new_customer())
        render_demo(console, result, elapsed=time.perf_counter() - started)

    try:
        anyio.run(main)
    except ZapbaseError as exc:
        raise _fail(str(exc)) from None


def chat(
    name: Annotated[str, typer.Option(help="Your WhatsApp profile name.")] = "Você",
    wa_id: Annotated[str | None, typer.Option(help="Your number, digits (default: a new one).")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Be a WhatsApp customer of the demo tenant: type messages and read the replies that
    come back through the whole pipeline (/voz, /menu, /botao N, /sair)."""
    settings = Settings()
    _logging(logging.INFO if verbose else logging.WARNING)
    target = _database(settings)

    async def main() -> None:
        async with local_stack(settings) as stack:
            await chat_session(console, stack, target.url, wa_id=wa_id or new_customer(), name=name)

    try:
        anyio.run(main)
    except ZapbaseError as exc:
        raise _fail(str(exc)) from None


def register(app: typer.Typer) -> None:
    """Add the worker commands to the `zapbase` app."""
    app.command("up")(up)
    app.command("simulator")(simulator)
    app.command("demo")(demo)
    app.command("chat")(chat)
