"""Races a frontend meets, through the same RPCs as `authenticated`: two people assigning one
conversation at once (one wins, the other gets a clear error, never a silent flip-flop), and an
agent resolving while the customer writes (the message is never lost)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from inbox_support import (
    AGENT,
    OWNER,
    TEAM,
    assignee,
    conversation,
    customer,
    handoff,
    load,
    member_id,
    new_agent,
    new_team,
    presence,
)

from support import Db, Session


def race(db: Db, first: uuid.UUID, holds: Callable[[Session], Any], waits: Callable[[], Any]) -> Any:
    """`holds` runs in `first`'s open request; `waits` starts in another thread and must block
    on the locks it took; then `first` commits and `waits` goes on. Returns what `waits`
    returned, or the exception it raised."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = waits()
        except Exception as exc:
            outcome["value"] = exc

    thread = threading.Thread(target=run)
    with db.as_user(first) as s:
        holds(s)
        thread.start()
        time.sleep(1.0)  # the second caller reaches the row the first one holds
        assert thread.is_alive(), f"the second caller did not wait for the first: {outcome}"
    thread.join(timeout=30)
    return outcome["value"]


def test_two_managers_assigning_at_once_one_wins_the_other_is_told(db: Db) -> None:
    team = new_team(db, "Triagem", "manual")  # nobody is given anything by the queue
    ana, bia = new_agent(db, "Ana", team), new_agent(db, "Bia", team)
    other_manager = new_agent(db, "Gerente", team, role="manager")
    presence(db, ana, "online")
    presence(db, bia, "online")
    conv = str(handoff(db, customer(db), team)["id"])

    def assign_ana(s: Session) -> None:
        s.all("select public.assign_conversation(%s, %s)", (conv, member_id(db, ana)))

    def assign_bia() -> None:
        with db.as_user(other_manager) as s:
            s.all("select public.assign_conversation(%s, %s)", (conv, member_id(db, bia)))

    lost = race(db, OWNER, assign_ana, assign_bia)
    assert isinstance(lost, psycopg.Error) and "already assigned to Ana: transfer it instead" in str(lost)
    assert assignee(db, conv) == member_id(db, ana)
    assert (load(db, ana), load(db, bia)) == (1, 0)
    assert (
        db.value(
            "select count(*) from public.events where subject_id = %s and type = 'conversation.assigned'",
            (conv,),
        )
        == 1
    )
    # a deliberate move is a transfer, with its own event
    with db.as_user(OWNER) as s:
        s.all(
            "select public.transfer_conversation(%s, %s, null, 'Bia fala espanhol')",
            (conv, member_id(db, bia)),
        )
    assert (assignee(db, conv), load(db, ana), load(db, bia)) == (member_id(db, bia), 0, 1)


def test_two_agents_taking_one_conversation_at_once(db: Db) -> None:
    ana = new_agent(db, "Ana", TEAM)
    conv = str(handoff(db, customer(db))["id"])  # nobody online: it waits in the queue
    presence(db, AGENT, "busy")
    presence(db, ana, "busy")

    def bruno_takes(s: Session) -> None:
        s.all("select public.assign_conversation(%s, %s)", (conv, member_id(db, AGENT)))

    def ana_takes() -> None:
        with db.as_user(ana) as s:
            s.all("select public.assign_conversation(%s, %s)", (conv, member_id(db, ana)))

    lost = race(db, AGENT, bruno_takes, ana_takes)
    assert isinstance(lost, psycopg.Error) and "already assigned to Bruno Lima: transfer it instead" in str(
        lost
    )
    assert (assignee(db, conv), load(db, AGENT), load(db, ana)) == (member_id(db, AGENT), 1, 0)


def test_two_conversations_for_the_last_slot_of_one_agent(db: Db) -> None:
    team = new_team(db, "Triagem", "manual")
    ana = new_agent(db, "Ana", team, capacity=1)
    other_manager = new_agent(db, "Gerente", team, role="manager")
    presence(db, ana, "online")
    first, second = (str(handoff(db, customer(db), team)["id"]) for _ in range(2))

    def one(s: Session) -> None:
        s.all("select public.assign_conversation(%s, %s)", (first, member_id(db, ana)))

    def other() -> None:
        with db.as_user(other_manager) as s:
            s.all("select public.assign_conversation(%s, %s)", (second, member_id(db, ana)))

    lost = race(db, OWNER, one, other)
    assert isinstance(lost, psycopg.errors.CheckViolation) and "Ana is at capacity (1 of 1" in str(lost)
    assert (assignee(db, first), assignee(db, second), load(db, ana)) == (member_id(db, ana), None, 1)


def test_customer_writing_while_the_agent_resolves_is_never_lost(db: Db) -> None:
    presence(db, AGENT, "online")
    conv = str(handoff(db, customer(db))["id"])
    wa_id = str(
        db.value(
            "select k.wa_id from public.conversations c join public.contacts k on k.id = c.contact_id"
            " where c.id = %s",
            (conv,),
        )
    )

    def resolve(s: Session) -> None:
        s.all("select public.resolve_conversation(%s, false)", (conv,))

    # the resolve holds the conversation; the customer's message waits and then opens a new
    # live conversation (the resolved one is final), with the sticky agent offered first
    conv_id, message = race(db, AGENT, resolve, lambda: db.create_conversation(wa_id, "Esqueci: e o boleto?"))
    assert conv_id != conv
    assert conversation(db, conv)["status"] == "resolved"
    fresh = conversation(db, conv_id)
    assert fresh["status"] == "open" and str(fresh["contact_id"]) == str(conversation(db, conv)["contact_id"])
    assert db.value(
        "select count(*) from public.messages where id = %s and conversation_id = %s", (message, conv_id)
    )
    assert load(db, AGENT) == 0
