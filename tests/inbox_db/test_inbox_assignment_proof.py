"""The assignment proof: 8 assigners at once (the scheduler's path), 2,000 queued
conversations in 4 teams with every strategy, 20 agents with random capacities going on and
offline (their drains at commit join the race) while agents' conversations are resolved in
batches. Checked afterwards from the event log alone: no agent ever above their capacity, no
conversation assigned twice, and each team served strictly in queue order (priority, then
waiting time: FIFO within a level)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, defaultdict

from inbox_support import TENANT, member_id, new_agent, new_team, presence

from support import Db

CONVERSATIONS, AGENTS, ASSIGNERS, DEADLINE = 2000, 20, 8, 50.0
RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


def test_concurrent_assigners_respect_capacity_order_and_assign_once(db: Db) -> None:
    rng = random.Random(14)
    db.sql(
        "update public.tenants set plan_id = (select id from public.plans where code = 'enterprise')"
        " where id = %s",
        (TENANT,),
    )
    teams = [
        new_team(db, f"Fila {n}", s)
        for n, s in enumerate(("round_robin", "load_balance", "priority", "round_robin"))
    ]
    agents: dict[str, uuid.UUID] = {}
    capacity: dict[str, int] = {}
    for n in range(AGENTS):
        cap = rng.randint(1, 5)
        user = new_agent(db, f"Agente {n}", *rng.sample(teams, rng.randint(1, 2)), capacity=cap)
        agents[member_id(db, user)] = user
        capacity[member_id(db, user)] = cap
    db.sql("update public.team_members set priority = (random() * 10)::int where tenant_id = %s", (TENANT,))
    # 2,000 customers waiting, queued one millisecond apart, nobody online yet
    db.sql(
        """
        with c as (
          insert into public.contacts (tenant_id, wa_id)
          select %(t)s, (5511900000000 + g)::text from generate_series(1, %(n)s) g returning id, wa_id)
        insert into public.conversations (tenant_id, contact_id, whatsapp_number_id, mode, status, team_id,
                                          priority, queued_at)
        select %(t)s, c.id, '00000000-0000-4000-9000-000000000001', 'human', 'pending',
               (%(teams)s::uuid[])[1 + (c.wa_id::bigint %% 4)],
               (array['urgent', 'high', 'normal', 'normal', 'low'])[1 + (c.wa_id::bigint * 7 %% 5)],
               now() - interval '1 hour' + (c.wa_id::bigint - 5511900000000) * interval '1 millisecond'
          from c""",
        {"t": TENANT, "n": CONVERSATIONS, "teams": teams},
    )
    assert (
        db.value(
            "select count(*) from public.conversations where tenant_id = %s and assignee_id is null"
            " and team_id = any(%s::uuid[])",
            (TENANT, teams),
        )
        == CONVERSATIONS
    )

    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(work: object) -> threading.Thread:
        def run() -> None:
            try:
                work()  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        return threading.Thread(target=run)

    def assigner(seed: int) -> None:
        pick = random.Random(seed)
        with db.connect() as conn:
            conn.autocommit = True
            while not stop.is_set():
                done = conn.execute(
                    "select private.assign_queue(%s, 5) as n", (pick.choice(teams),)
                ).fetchone()
                if not done or not done["n"]:
                    time.sleep(0.02)  # a poller's pause: nothing to do, or another assigner holds the team

    def chaos() -> None:
        pick = random.Random(99)
        members = list(agents)
        while not stop.is_set():
            presence(db, agents[pick.choice(members)], pick.choice(["online", "online", "offline", "busy"]))
            time.sleep(0.05)

    def resolver() -> None:
        with db.connect() as conn:
            conn.autocommit = True
            while not stop.is_set():
                conn.execute(
                    "update public.conversations set status = 'resolved' where id in ("
                    " select id from public.conversations where tenant_id = %s and assignee_id is not null"
                    " and status = 'open' order by assigned_at limit 30 for update skip locked)",
                    (TENANT,),
                )
                waiting = conn.execute(
                    "select exists (select 1 from public.conversations where tenant_id = %s"
                    " and team_id = any(%s::uuid[]) and assignee_id is null"
                    " and status = 'pending') as waiting",
                    (TENANT, teams),
                ).fetchone()
                if waiting and not waiting["waiting"]:
                    stop.set()

    for member in rng.sample(list(agents), AGENTS // 2):
        presence(db, agents[member], "online")
    threads = [guarded(lambda s=s: assigner(s)) for s in range(ASSIGNERS)] + [
        guarded(chaos),
        guarded(resolver),
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    chaos_until = started + DEADLINE / 4
    while not stop.is_set() and time.monotonic() < started + DEADLINE:
        if time.monotonic() > chaos_until:  # the second half: everyone online, the queues empty
            for user in agents.values():
                presence(db, user, "online")
            chaos_until = float("inf")
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    raced = db.value(
        "select count(*) from public.events where tenant_id = %s and type = 'conversation.assigned'",
        (TENANT,),
    )
    assert raced >= CONVERSATIONS // 2, "the race did most of the work"
    # what the race left (the machine is shared): freed and drained one batch at a time
    for user in agents.values():
        presence(db, user, "online")
    while db.value(
        "select count(*) from public.conversations where tenant_id = %s and team_id = any(%s::uuid[])"
        " and assignee_id is null and status = 'pending'",
        (TENANT, teams),
    ):
        db.sql(
            "update public.conversations set status = 'resolved' where tenant_id = %s and status = 'open'",
            (TENANT,),
        )
        db.value("select private.run_job('inbox_assign')")

    # -- the event log ---------------------------------------------------------------------
    log = db.sql(
        """
        select e.type, e.subject_id as conv, e.payload ->> 'assignee_id' as agent,
               c.team_id, c.priority, c.queued_at
          from public.events e join public.conversations c on c.id = e.subject_id
         where e.tenant_id = %s and c.team_id = any(%s::uuid[])
           and e.type in ('conversation.assigned', 'conversation.resolved')
         order by e.created_at, e.id""",
        (TENANT, teams),
    )
    assigned = [e for e in log if e["type"] == "conversation.assigned"]
    assert len(assigned) == CONVERSATIONS, "every queued conversation was assigned"
    assert [c for c, n in Counter(e["conv"] for e in assigned).items() if n > 1] == [], "double assignments"

    held: Counter[str] = Counter()
    violations = []
    for e in log:
        held[e["agent"]] += 1 if e["type"] == "conversation.assigned" else -1
        if held[e["agent"]] > capacity[e["agent"]]:
            violations.append((e["agent"], held[e["agent"]], capacity[e["agent"]]))
    assert violations == [], "capacity violations"

    served: dict[str, list[tuple[int, object]]] = defaultdict(list)
    for e in assigned:
        served[str(e["team_id"])].append((RANK[e["priority"]], e["queued_at"]))
    for team, order in served.items():
        assert order == sorted(order), f"team {team} was not served in queue order"

    counters = db.sql(
        """
        select p.member_id, p.open_conversations,
               (select count(*) from public.conversations c where c.assignee_id = p.member_id
                   and c.status in ('open', 'waiting', 'pending')) as live
          from public.agent_presence p where p.tenant_id = %s""",
        (TENANT,),
    )
    assert [r for r in counters if r["open_conversations"] != r["live"]] == [], "load counters drifted"
