"""Presence, queues and assignment as a frontend and the worker drive them: who gets a
conversation, in which order, and every way of going past an agent's capacity refused."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from inbox_support import (
    AGENT,
    OWNER,
    TEAM,
    TENANT,
    assignee,
    conversation,
    customer,
    events,
    handoff,
    load,
    member_id,
    new_agent,
    new_team,
    presence,
    timeline,
)

from support import Db

# -- presence ---------------------------------------------------------------------------


def test_online_lapses_without_heartbeat_and_a_heartbeat_brings_it_back(db: Db) -> None:
    row = presence(db, AGENT, "online")
    assert row["status"] == "online" and row["expires_at"] is not None
    db.sql(
        "update public.agent_presence set expires_at = now() - interval '1 second' where member_id = %s",
        (member_id(db, AGENT),),
    )
    # expired presence no longer receives conversations, even before the job notices
    conv = customer(db)
    assert handoff(db, conv)["assignee_id"] is None
    assert db.value("select private.run_job('inbox_housekeeping')") >= 1
    row = db.sql(
        "select status, resume_status, offline_since from public.agent_presence where member_id = %s",
        (member_id(db, AGENT),),
    )[0]
    assert (row["status"], row["resume_status"]) == ("offline", "online")
    with db.as_user(AGENT) as s:
        assert s.one("select * from public.heartbeat(%s)", (TENANT,))["status"] == "online"
    # coming back online drained the queue at commit
    assert assignee(db, conv) == member_id(db, AGENT)


def test_presence_is_the_agents_own_and_visible_to_the_team(db: Db) -> None:
    viewer = db.add_member(uuid.UUID(TENANT), "viewer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(viewer) as s:
        s.all("select public.set_presence(%s, 'online')", (TENANT,))
    with pytest.raises(psycopg.Error, match="status must be"), db.as_user(AGENT) as s:
        s.all("select public.set_presence(%s, 'dormindo')", (TENANT,))
    presence(db, AGENT, "busy")
    with db.as_user(OWNER) as s:
        seen = s.all("select status from public.agent_presence where member_id = %s", (member_id(db, AGENT),))
    assert seen == [{"status": "busy"}]
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.all("update public.agent_presence set open_conversations = 0")
    assert db.value("select count(*) from public.events where type = 'agent.presence_changed'") == 1


# -- queue order and strategies ------------------------------------------------------------


def test_queue_is_priority_then_waiting_time_and_fifo_within_a_level(db: Db) -> None:
    convs = {name: customer(db) for name in ("normal1", "low", "normal2", "urgent", "high")}
    priorities = {"normal1": "normal", "low": "low", "normal2": "normal", "urgent": "urgent", "high": "high"}
    for name, conv in convs.items():  # handed off in this order, nobody online
        handoff(db, conv, priority=priorities[name])
    assert all(assignee(db, c) is None for c in convs.values())
    db.sql("update public.members set max_concurrent_conversations = 1 where user_id = %s", (AGENT,))
    presence(db, AGENT, "online")
    served = []
    for _ in convs:
        current = next(
            n
            for n, c in convs.items()
            if assignee(db, c) == member_id(db, AGENT) and conversation(db, c)["status"] == "open"
        )
        served.append(current)
        with db.as_user(AGENT) as s:  # resolving frees the one slot: the next is drained at commit
            s.all("select public.resolve_conversation(%s, false)", (convs[current],))
    assert served == ["urgent", "high", "normal1", "normal2", "low"]


def test_round_robin_load_balance_and_priority_strategies(db: Db) -> None:
    rr = new_team(db, "Vendas", "round_robin")
    ana, bia = new_agent(db, "Ana", rr), new_agent(db, "Bia", rr)
    presence(db, ana, "online")
    presence(db, bia, "online")
    got = [assignee(db, handoff(db, customer(db), rr)["id"]) for _ in range(4)]
    assert (
        got == [member_id(db, ana), member_id(db, bia)] * 2
        or got == [member_id(db, bia), member_id(db, ana)] * 2
    )

    lb = new_team(db, "Financeiro", "load_balance")
    db.sql(
        "insert into public.team_members (tenant_id, team_id, member_id) values (%s, %s, %s)",
        (TENANT, lb, member_id(db, ana)),
    )
    caio = new_agent(db, "Caio", lb)
    presence(db, caio, "online")
    # Ana already holds 2 (from Vendas): the fewest open wins
    got = [assignee(db, handoff(db, customer(db), lb)["id"]) for _ in range(3)]
    assert got[:2] == [member_id(db, caio), member_id(db, caio)]
    assert got[2] in (member_id(db, ana), member_id(db, caio))

    pr = new_team(db, "VIP", "priority")
    duda, edu = new_agent(db, "Duda", pr, capacity=2), new_agent(db, "Edu", pr)
    db.sql("update public.team_members set priority = 10 where member_id = %s", (member_id(db, duda),))
    presence(db, duda, "online")
    presence(db, edu, "online")
    got = [assignee(db, handoff(db, customer(db), pr)["id"]) for _ in range(3)]
    assert got == [member_id(db, duda), member_id(db, duda), member_id(db, edu)]  # Duda until full


def test_sticky_to_the_contacts_previous_agent_when_online(db: Db) -> None:
    team = new_team(db, "Vendas", "round_robin")
    ana, bia = new_agent(db, "Ana", team), new_agent(db, "Bia", team)
    presence(db, ana, "online")
    conv, _ = db.create_conversation("5511955554444", "Oi")
    handoff(db, conv, team)
    first = assignee(db, conv)
    with db.as_user(ana if first == member_id(db, ana) else bia) as s:
        s.all("select public.resolve_conversation(%s, false)", (conv,))
    presence(db, bia, "online")
    db.sql(
        "update public.agent_presence set last_assigned_at = now() + interval '1 hour' where member_id = %s",
        (first,),
    )  # round robin alone would now pick the other agent
    again, _ = db.create_conversation("5511955554444", "Voltei")
    assert again != conv
    handoff(db, again, team)
    assert assignee(db, again) == first


def test_per_team_cap_and_only_online_agents(db: Db) -> None:
    team = new_team(db, "Vendas")
    ana = new_agent(db, "Ana", team, capacity=10)
    db.sql("update public.team_members set max_conversations = 1 where team_id = %s", (team,))
    presence(db, ana, "online")
    convs = [handoff(db, customer(db), team)["id"] for _ in range(2)]
    assert [assignee(db, c) for c in convs] == [member_id(db, ana), None]
    presence(db, ana, "away")
    db.sql("update public.team_members set max_conversations = null where team_id = %s", (team,))
    assert db.value("select private.run_job('inbox_assign')") == 0  # away: keeps hers, gets none
    presence(db, ana, "online")
    assert assignee(db, convs[1]) == member_id(db, ana)


def test_manual_assignment_refuses_other_tenants_other_teams_offline_and_full_agents(db: Db) -> None:
    conv = handoff(db, customer(db))["id"]
    other_tenant = db.create_tenant(db.create_user(), "Outra")
    outsider = db.value("select id from public.members where tenant_id = %s", (other_tenant,))
    elsewhere = new_agent(db, "Ana", new_team(db, "Vendas"))
    full = new_agent(db, "Bia", TEAM, capacity=0)
    presence(db, elsewhere, "online")
    presence(db, full, "online")

    def assign(who: uuid.UUID | str, member: str) -> None:
        with db.as_user(who) as s:
            s.all("select public.assign_conversation(%s, %s, 'teste')", (conv, member))

    with pytest.raises(psycopg.Error, match="agent not found"):
        assign(OWNER, str(outsider))
    with pytest.raises(psycopg.Error, match="not in this conversation's team"):
        assign(OWNER, member_id(db, elsewhere))
    with pytest.raises(psycopg.Error, match="is offline"):
        assign(OWNER, member_id(db, AGENT))
    with pytest.raises(psycopg.Error, match=r"at capacity \(0 of 0"):
        assign(OWNER, member_id(db, full))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="to themselves only"):
        assign(AGENT, member_id(db, full))
    # the same rules on a plain PostgREST update of the column
    with pytest.raises(psycopg.Error, match="at capacity"), db.as_user(OWNER) as s:
        s.all("update public.conversations set assignee_id = %s where id = %s", (member_id(db, full), conv))
    assert assignee(db, conv) is None
    presence(db, AGENT, "online")  # drains: Bruno takes it
    assert assignee(db, conv) == member_id(db, AGENT)
    assert [
        e["type"] for e in events(db, conv) if e["type"] in ("conversation.queued", "conversation.assigned")
    ] == ["conversation.queued", "conversation.assigned"]
    assert any("atribuída a Bruno Lima pela fila" in (line["content"] or "") for line in timeline(db, conv))


def test_an_agent_replying_past_capacity_is_refused(db: Db) -> None:
    db.sql("update public.members set max_concurrent_conversations = 1 where user_id = %s", (AGENT,))
    presence(db, AGENT, "online")
    first = handoff(db, customer(db))["id"]
    assert assignee(db, first) == member_id(db, AGENT)
    second = customer(db)  # with the bot, unassigned; Bruno writes in it and would take it over
    with pytest.raises(psycopg.Error, match=r"at capacity \(1 of 1"), db.as_user(AGENT) as s:
        s.all('select public.send_message(%s, \'{"type": "text", "text": {"body": "Oi"}}\')', (second,))
    assert load(db, AGENT) == 1


def test_pull_next_takes_the_head_for_agents_who_may_pull(db: Db) -> None:
    team = new_team(db, "Manual", "manual")
    ana, bia = new_agent(db, "Ana", team), new_agent(db, "Bia", team)
    db.sql(
        "update public.team_members set can_pull_from_queue = false where member_id = %s",
        (member_id(db, bia),),
    )
    presence(db, ana, "online")
    older, newer = (str(handoff(db, customer(db), team)["id"]) for _ in range(2))
    assert assignee(db, older) is None  # manual: nobody is given anything
    with db.as_user(ana) as s:
        assert str(s.one("select * from public.pull_next_conversation(%s)", (TENANT,))["id"]) == older
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(bia) as s:
        s.all("select public.pull_next_conversation(%s, %s)", (TENANT, team))
    assert assignee(db, newer) is None


def test_resolve_frees_capacity_and_the_load_counter_follows_every_path(db: Db) -> None:
    db.sql("update public.members set max_concurrent_conversations = 1 where user_id = %s", (AGENT,))
    presence(db, AGENT, "online")
    a, b = handoff(db, customer(db))["id"], handoff(db, customer(db))["id"]
    assert (assignee(db, a), assignee(db, b), load(db, AGENT)) == (member_id(db, AGENT), None, 1)
    with db.as_user(AGENT) as s:  # a plain update of the status, not the RPC
        s.all("update public.conversations set status = 'closed' where id = %s", (a,))
    assert assignee(db, b) == member_id(db, AGENT) and load(db, AGENT) == 1
    db.sql("delete from public.conversations where id = %s", (b,))
    assert load(db, AGENT) == 0


def test_overflow_goes_to_the_overflow_team_or_gets_the_away_message(db: Db) -> None:
    spare = new_team(db, "Plantão")
    team = new_team(db, "Vendas", max_queue_size=1, overflow_team_id=spare)
    first = handoff(db, customer(db), team)
    second = handoff(db, customer(db), team)
    assert (str(first["team_id"]), str(second["team_id"])) == (team, spare)
    full = new_team(db, "Cheio", max_queue_size=1, away_message="Estamos cheios, já voltamos!")
    handoff(db, customer(db), full)
    late = handoff(db, customer(db), full)
    assert str(late["team_id"]) == full and late["status"] == "pending"  # nothing lost: still queued
    sent = db.sql(
        "select content, sender_type from public.messages where conversation_id = %s"
        " and direction = 'outbound'",
        (late["id"],),
    )
    assert sent == [{"content": "Estamos cheios, já voltamos!", "sender_type": "system"}]
    assert [e["type"] for e in events(db, late["id"], "conversation.overflowed")] == [
        "conversation.overflowed"
    ]


def test_a_tenant_without_teams_or_bots_gets_its_conversations_queued_for_a_manager(db: Db) -> None:
    """A new tenant has no bot and no team yet: its first customer's message is stored at once
    and waits, pending, for a manager to assign it (the assigner once queued itself again at
    the same commit for ever, and the webhook never got its answer)."""
    db.sql("update public.bots set is_active = false where tenant_id = %s", (TENANT,))
    db.sql("update public.teams set is_active = false where tenant_id = %s", (TENANT,))
    done: list[str] = []
    writer = threading.Thread(target=lambda: done.append(customer(db)), daemon=True)
    writer.start()
    writer.join(timeout=20)
    if writer.is_alive():  # free the server before failing
        db.sql("select pg_terminate_backend(pid) from pg_stat_activity"
               " where datname = current_database() and pid <> pg_backend_pid() and state = 'active'")
        pytest.fail("the customer's message never committed: the assigner did not stop")
    row = conversation(db, done[0])
    assert (row["mode"], row["status"], row["team_id"], row["assignee_id"]) == (
        "human", "pending", None, None)
