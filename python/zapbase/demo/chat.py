"""`zapbase chat`: type as the customer, read the replies."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from rich.console import Console

from zapbase.db.pool import connect
from zapbase.demo.common import VOICE_NOTE, live_conversation, queue_menu, settle, shown
from zapbase.errors import ZapbaseError
from zapbase.simulator import SimulatedUser

if TYPE_CHECKING:
    from zapbase.local_stack import LocalStack


def _read_line() -> str | None:
    try:
        return input()
    except EOFError:
        return None


async def _print_replies(out: Console, user: SimulatedUser) -> None:
    printed = 0
    while True:
        for message in user.inbox[printed:]:
            out.print(
                f"[bold green]Loja Demo ›[/] {shown(message, numbered=True)}", highlight=False, markup=True
            )
        printed = len(user.inbox)
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
                    await queue_menu(conn, await live_conversation(conn, user.wa_id))
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
                await settle(conn, await live_conversation(conn, user.wa_id), timeout=10)
            await anyio.sleep(0.2)
        tg.cancel_scope.cancel()
