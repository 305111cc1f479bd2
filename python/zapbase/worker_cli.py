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
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.to_thread
import httpx
import typer
import uvicorn
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from zapbase.db.embedded import free_port, port_is_free
from zapbase.db.migrate import mask_password
from zapbase.db.target import DatabaseTarget
from zapbase.errors import ZapbaseError
from zapbase.rag.seed import ingest_seed_knowledge
from zapbase.settings import Settings
from zapbase.simulator import (
    DEMO_NUMBER,
    ReceivedMessage,
    SimulatedUser,
    Simulator,
    SimulatorConfig,
    WebhookDelivery,
    create_app,
    serve,
)
from zapbase.worker.database import Connection, connect
from zapbase.worker.http import WEBHOOK_PATH
from zapbase.worker.processor import BotResponder
from zapbase.worker.runner import EmbeddedServer, Runner

__all__ = ["LocalStack", "local_stack", "register"]

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
        ingest_seed_knowledge(target.url, settings.zapbase_project_dir)
    except ZapbaseError as exc:
        raise _fail(str(exc)) from None
    console.print(f"database {mask_password(target.url)} ({len(applied)} migration(s) applied, seed and "
                  "knowledge base applied)", highlight=False)  # fmt: skip
    return target


def _check_port(port: int, what: str, variable: str) -> None:
    if not port_is_free(port):
        raise _fail(f"port {port} ({what}) is already in use; choose another with {variable}=...")


@dataclass(frozen=True, slots=True)
class LocalStack:
    """A worker and a simulator wired to each other, inside one event loop."""

    runner: Runner
    simulator: Simulator
    simulator_url: str
    webhooks: httpx.AsyncClient  # posts the simulated users' webhooks
    stopped: anyio.Event  # the worker has stopped (a signal, or an error)

    def user(self, wa_id: str, name: str) -> SimulatedUser:
        return SimulatedUser(self.simulator, self.webhooks, wa_id=wa_id, name=name)


@asynccontextmanager
async def local_stack(
    settings: Settings,
    *,
    http_port: int | None = None,
    simulator_port: int | None = None,
    handle_signals: bool = False,
    responder: BotResponder | None = None,
) -> AsyncIterator[LocalStack]:
    """Start the simulator and a worker sending to it (free ports unless given); on exit the
    worker stops gracefully first, then the simulator it sends to."""
    http_port = http_port or free_port()
    simulator_port = simulator_port or free_port()
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    settings = settings.model_copy(update={
        "graph_api_base_url": simulator_url, "zapbase_http_host": "127.0.0.1", "zapbase_http_port": http_port,
    })  # fmt: skip
    simulator = Simulator(SimulatorConfig(
        numbers=(DEMO_NUMBER,), webhook_url=f"http://127.0.0.1:{http_port}{WEBHOOK_PATH}",
        auto_statuses=True, enforce_window=True,
    ))  # fmt: skip
    runner = Runner(settings, handle_signals=handle_signals, responder=responder)
    worker_done = anyio.Event()

    async def run_worker() -> None:
        try:
            await runner.run()
        finally:
            worker_done.set()

    async with httpx.AsyncClient(timeout=30.0) as webhooks, anyio.create_task_group() as tg:
        sim_server = EmbeddedServer(uvicorn.Config(
            create_app(simulator=simulator, webhook_client=webhooks), host="127.0.0.1", port=simulator_port,
            log_level="warning", lifespan="off",
        ))  # fmt: skip
        tg.start_soon(sim_server.serve)
        tg.start_soon(run_worker)
        with anyio.fail_after(30):
            await runner.ready.wait()
            while not sim_server.started:
                await anyio.sleep(0.02)
        try:
            yield LocalStack(runner, simulator, simulator_url, webhooks, worker_done)
        finally:
            runner.stop()
            with anyio.CancelScope(shield=True):
                await worker_done.wait()
            sim_server.should_exit = True


def up(
    with_simulator: Annotated[
        bool, typer.Option("--simulator", help="Run the WhatsApp simulator in this process and send to it.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Start the database (embedded unless DATABASE_URL), migrate, seed, and run the worker:
    HTTP API, inbound processor and outbound sender, until Ctrl-C."""
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
    console.print(f"worker on {base}: webhook {base}{WEBHOOK_PATH}, {base}/readyz, {base}/metrics")
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
    url = webhook_url or f"http://{settings.zapbase_http_host}:{settings.zapbase_http_port}{WEBHOOK_PATH}"
    _check_port(port, "simulator", "--port")
    console.print(f"WhatsApp simulator (local stand-in, not Meta) on http://127.0.0.1:{port}")
    console.print(f"  worker: GRAPH_API_BASE_URL=http://127.0.0.1:{port} zapbase up", highlight=False)
    console.print(f"  webhooks → {url}; users write with POST /_simulator/users/<wa_id>/messages",
                  highlight=False)  # fmt: skip
    serve(port=port, webhook_url=url, enforce_window=enforce_window, auto_statuses=True, log_level="warning")


def demo(verbose: VerboseOption = False) -> None:
    """Play a short scripted conversation with the demo tenant's bot through the whole
    pipeline (questions answered from the knowledge base, a voice note, a button reply)
    and print the transcript and the rows."""
    settings = Settings()
    _logging(logging.INFO if verbose else logging.WARNING)
    target = _database(settings)

    async def main() -> None:
        started = time.perf_counter()
        async with local_stack(settings) as stack:
            console.print(f"worker {stack.runner.http_url} · WhatsApp simulator {stack.simulator_url} "
                          "(local stand-in, not Meta)", highlight=False)  # fmt: skip
            result = await demo_script(stack, target.url, wa_id=_new_customer())
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
            await chat_session(console, stack, target.url, wa_id=wa_id or _new_customer(), name=name)

    try:
        anyio.run(main)
    except ZapbaseError as exc:
        raise _fail(str(exc)) from None


# -- the scripted demo ----------------------------------------------------------------------

CUSTOMER = "Maria Silva"
REPLY_TIMEOUT_S = 30.0
# A few KB that start like an Ogg page: the pipeline stores bytes, it does not decode them.
VOICE_NOTE = b"OggS\x00\x02" + bytes(range(256)) * 16
MENU = {
    "type": "interactive",
    "interactive": {
        "type": "button",
        "body": {"text": "Quer falar com uma pessoa da nossa equipe?"},
        "action": {"buttons": [
            {"type": "reply", "reply": {"id": "atendente", "title": "Falar com atendente"}},
            {"type": "reply", "reply": {"id": "continuar", "title": "Continuar com o bot"}},
        ]},
    },
}  # fmt: skip
_SETTLED_SQL = """
select not exists (select 1 from public.messages m where m.conversation_id = %s
                    and m.status in ('received', 'processing', 'queued', 'sending', 'sent')) as settled
"""
_CONVERSATION_SQL = """
select c.id, c.status, c.mode, b.name as bot, t.name as team, c.handoff_reason, c.inbound_count,
       c.outbound_count, c.window_expires_at
  from public.conversations c
  left join public.teams t on t.tenant_id = c.tenant_id and t.id = c.team_id
  left join public.bots b on b.tenant_id = c.tenant_id and b.id = c.bot_id
 where c.id = %s
"""
_MESSAGES_SQL = """
select m.created_at, m.direction, m.sender_type, m.type, m.content, m.status, m.wamid, m.media_storage_path,
       m.media_size, m.attempts, m.error_code, m.error_details, m.ai_model
  from public.messages m where m.conversation_id = %s order by m.created_at, m.id
"""
_USAGE_SQL = """
select u.feature, u.model, u.outcome, u.input_tokens, u.output_tokens, u.cost_usd
  from public.ai_usage u where u.conversation_id = %s order by u.created_at, u.attempt
"""


@dataclass(frozen=True, slots=True)
class Line:
    at: float
    wamid: str
    text: str
    outbound: bool


@dataclass(frozen=True, slots=True)
class DemoResult:
    wa_id: str
    lines: list[Line]
    conversation: dict[str, Any]
    messages: list[dict[str, Any]]
    usage: list[dict[str, Any]]
    typing_indicators: int


async def _next_reply(user: SimulatedUser, seen: int) -> ReceivedMessage:
    try:
        with anyio.fail_after(REPLY_TIMEOUT_S):
            while len(user.inbox) <= seen:
                await anyio.sleep(0.05)
    except TimeoutError:
        raise ZapbaseError(f"no reply within {REPLY_TIMEOUT_S:.0f} s; rerun with --verbose to see the "
                           "worker's logs") from None  # fmt: skip
    return user.inbox[seen]


def _shown(message: ReceivedMessage, *, numbered: bool = False) -> str:
    buttons = message.content.get("action", {}).get("buttons", [])
    titles = "  ".join(
        f"[{f'{n} ' if numbered else ''}{b['reply']['title']}]"
        for n, b in enumerate(buttons, 1)
        if "reply" in b
    )
    text = message.text or f"[{message.type}]"
    return f"{text}\n{titles}" if titles else text


async def _live_conversation(conn: Connection, wa_id: str) -> uuid.UUID:
    cur = await conn.execute(
        "select c.id from public.conversations c join public.contacts k on k.id = c.contact_id"
        " where k.wa_id = %s order by c.created_at desc limit 1",
        (wa_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise ZapbaseError(f"no conversation was stored for +{wa_id}")
    conversation_id: uuid.UUID = row["id"]
    return conversation_id


async def _queue_menu(conn: Connection, conversation_id: uuid.UUID) -> None:
    # What an agent or a campaign could send; the default bot answers only with text.
    await conn.execute(
        "select public.whatsapp_queue_reply(%s, %s, 'system', null, null)", (conversation_id, Jsonb(MENU))
    )


async def _settled(conn: Connection, conversation_id: uuid.UUID) -> bool:
    """Nothing of the conversation is in a queue or short of `delivered`."""
    row = await (await conn.execute(_SETTLED_SQL, (conversation_id,))).fetchone()
    return bool(row and row["settled"])


async def _settle(conn: Connection, conversation_id: uuid.UUID, timeout: float) -> None:
    with anyio.move_on_after(timeout):
        while not await _settled(conn, conversation_id):
            await anyio.sleep(0.05)


async def demo_script(stack: LocalStack, db_url: str, *, wa_id: str) -> DemoResult:
    """A new customer of Loja Demo asks about delivery (the bot welcomes her and answers from
    the knowledge base), sends a voice note, gets a menu (queued by this script as a system
    message) and taps its button; returns what the phone saw and the rows."""
    user = stack.user(wa_id, CUSTOMER)
    started = time.perf_counter()
    lines: list[Line] = []

    def note(message: ReceivedMessage | WebhookDelivery, text: str) -> None:
        outbound = isinstance(message, ReceivedMessage)
        lines.append(Line(time.perf_counter() - started, message.wamid, text, outbound))

    async with await connect(db_url) as conn:

        async def customer(text: str, action: Awaitable[WebhookDelivery]) -> uuid.UUID:
            """Send, then wait for every reply of the turn (the bot may send several)."""
            seen = len(user.inbox)
            delivery = await action
            if not delivery.accepted:
                raise ZapbaseError(f"the worker refused the webhook: HTTP {delivery.status_code}")
            note(delivery, text)
            await _next_reply(user, seen)
            conversation_id = await _live_conversation(conn, wa_id)
            with anyio.move_on_after(REPLY_TIMEOUT_S):
                while True:
                    for reply in user.inbox[seen:]:
                        note(reply, _shown(reply))
                    seen = len(user.inbox)
                    if await _settled(conn, conversation_id):
                        break
                    await anyio.sleep(0.05)
            for reply in user.inbox[seen:]:
                note(reply, _shown(reply))
            return conversation_id

        for question in ("Oi! Qual o prazo de entrega para o Nordeste?", "E o frete é grátis?"):
            await customer(question, user.send_text(question))
        conversation_id = await customer(
            f"🎤 nota de voz ({len(VOICE_NOTE)} bytes)", user.send_voice_note(VOICE_NOTE)
        )
        seen = len(user.inbox)
        await _queue_menu(conn, conversation_id)
        menu = await _next_reply(user, seen)
        note(menu, _shown(menu))
        await customer("👆 Falar com atendente", user.press_button(menu, "atendente"))
        conversation = await (await conn.execute(_CONVERSATION_SQL, (conversation_id,))).fetchone()
        messages = await (await conn.execute(_MESSAGES_SQL, (conversation_id,))).fetchall()
        usage = await (await conn.execute(_USAGE_SQL, (conversation_id,))).fetchall()
    ours = {line.wamid for line in lines}
    typing = sum(1 for r in stack.simulator.reads if r.typing_indicator and r.message_id in ours)
    return DemoResult(wa_id, lines, conversation or {}, messages, usage, typing)


def render_demo(out: Console, result: DemoResult, *, elapsed: float) -> None:
    senders = {m["wamid"]: m["sender_type"] for m in result.messages}
    statuses = {m["wamid"]: m["status"] for m in result.messages}
    transcript = Table(
        title=f"Transcript: {CUSTOMER} (+{result.wa_id}) ⇄ Loja Demo (+{DEMO_NUMBER.display_phone_number})"
    )
    for column in ("t", "from", "message", "status"):
        transcript.add_column(column)
    for line in result.lines:
        who = f"Loja Demo ({senders.get(line.wamid, '?')})" if line.outbound else CUSTOMER
        transcript.add_row(f"+{line.at:.1f}s", who, line.text, statuses.get(line.wamid, "?"))
    out.print(transcript)
    conv = result.conversation
    table = Table(title="public.conversations")
    for key in conv:
        table.add_column(key)
    table.add_row(*(_cell(key, value) for key, value in conv.items()))
    out.print(table)
    rows = Table(title="public.messages")
    for column in ("t", "direction", "sender", "type", "content", "status", "wamid", "ai", "media / error"):
        rows.add_column(column, overflow="fold")
    start = result.messages[0]["created_at"] if result.messages else None
    for m in result.messages:
        if m["media_storage_path"]:  # the key ends in the message id: enough to find the file
            extra = f"…/{str(m['media_storage_path']).rsplit('/', 1)[-1]} ({m['media_size']} B)"
        else:
            extra = f"{m['error_code'] or ''} {m['error_details'] or ''}".strip()
        rows.add_row(
            f"+{(m['created_at'] - start).total_seconds():.1f}s",
            m["direction"],
            m["sender_type"],
            m["type"],
            _cell("content", m["content"]),
            m["status"],
            _cell("wamid", m["wamid"]),
            _cell("ai", m["ai_model"]),
            extra,
        )
    out.print(rows)
    usage = Table(title="public.ai_usage (this conversation)")
    for column in ("feature", "model", "outcome", "tokens in / out", "cost USD"):
        usage.add_column(column)
    for u in result.usage:
        tokens = f"{u['input_tokens']} / {u['output_tokens']}"
        usage.add_row(u["feature"], u["model"], u["outcome"], tokens, f"{u['cost_usd']:.6f}")
    out.print(usage)
    inbound = sum(1 for m in result.messages if m["direction"] == "inbound")
    delivered = sum(1 for m in result.messages if m["direction"] == "outbound" and m["status"] == "delivered")
    out.print(
        f"[bold green]done[/] in {elapsed:.1f} s: {inbound} customer messages processed, {delivered} replies "
        f"delivered, {result.typing_indicators} typing indicators shown; conversation is "
        f"[bold]{conv.get('mode')}[/] / {conv.get('status')} (team {conv.get('team')})."
    )


def _cell(key: str, value: object) -> str:
    if value is None:
        return "-"
    text = str(value).replace("\n", " ")
    if key == "wamid":
        return "…" + text[-12:]
    if key == "id":
        return text[:8] + "…"
    return text if len(text) <= 60 else text[:59] + "…"


# -- chat ---------------------------------------------------------------------------------


def _read_line() -> str | None:
    try:
        return input()
    except EOFError:
        return None


async def _print_replies(out: Console, user: SimulatedUser) -> None:
    shown = 0
    while True:
        for message in user.inbox[shown:]:
            out.print(
                f"[bold green]Loja Demo ›[/] {_shown(message, numbered=True)}", highlight=False, markup=True
            )
        shown = len(user.inbox)
        await anyio.sleep(0.1)


async def chat_session(out: Console, stack: LocalStack, db_url: str, *, wa_id: str, name: str) -> None:
    """Read lines from the terminal and send them as `name` (+wa_id); print every reply."""
    user = stack.user(wa_id, name)
    out.print(
        f"You are {name} (+{wa_id}) writing to Loja Demo. Type a message; [bold]/voz[/] sends a voice "
        "note, [bold]/menu[/] has the store send a button menu, [bold]/botao N[/] taps its button N, "
        "[bold]/sair[/] (or Ctrl-D) leaves."
    )
    async with await connect(db_url) as conn, anyio.create_task_group() as tg:
        tg.start_soon(_print_replies, out, user)
        while True:
            line = await anyio.to_thread.run_sync(_read_line, abandon_on_cancel=True)
            text = (line or "").strip()
            if line is None or text in ("/sair", "/quit"):
                break
            if not text:
                continue
            if text == "/menu":
                try:
                    await _queue_menu(conn, await _live_conversation(conn, user.wa_id))
                except ZapbaseError as exc:
                    out.print(f"[red]{exc}[/] (write something first)")
                continue
            if text == "/voz":
                delivery = await user.send_voice_note(VOICE_NOTE)
            elif text.startswith("/botao"):
                menus = [m for m in user.inbox if m.content.get("action", {}).get("buttons")]
                buttons = menus[-1].content["action"]["buttons"] if menus else []
                choice = text.removeprefix("/botao").strip()
                if not choice.isdigit() or not 1 <= int(choice) <= len(buttons):
                    out.print(f"no button {choice!r}: the last menu has {len(buttons)} (try /menu)")
                    continue
                delivery = await user.press_button(menus[-1], buttons[int(choice) - 1]["reply"]["id"])
            else:
                delivery = await user.send_text(text[:4096])
            if not delivery.accepted:
                out.print(f"[red]the worker refused the webhook: HTTP {delivery.status_code}[/]")
        if user.inbox or line is None:
            # Input ended (a pipe, Ctrl-D): let the replies in flight arrive and print.
            with contextlib.suppress(ZapbaseError):
                await _settle(conn, await _live_conversation(conn, user.wa_id), timeout=10)
            await anyio.sleep(0.2)
        tg.cancel_scope.cancel()


def _new_customer() -> str:
    # A new number per run: an earlier run's conversation (maybe handed to humans) stays apart.
    return f"55119{secrets.randbelow(10**8):08d}"


def register(app: typer.Typer) -> None:
    """Add the worker commands to the `zapbase` app."""
    app.command("up")(up)
    app.command("simulator")(simulator)
    app.command("demo")(demo)
    app.command("chat")(chat)
