"""Property-based Hotmart webhooks: events of the corpus (every event type Hotmart documents)
mutated at any depth (missing, extra and wrong-typed fields, hostile strings), with ids and
transaction codes drawn from a few so redeliveries and out-of-order purchases meet, plus
bodies that are not JSON objects (garbage, deep nesting, over the size limit), go through the
worker's HTTP route with the right hottok. The route never answers 5xx; every body is kept
(applied, stored, failed with its error, duplicate, or quarantined with a reason); a body that
is not applied changes nothing else; LTV and tags stay those the transactions give.

Small by default; `ZAPBASE_FUZZ_EXAMPLES=10000 make fuzz` for a long run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hotmart_corpus import CORPUS, HOTTOK, TENANT, create_integration, dated
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz_settings, mutated_tree, odd, pool_on_another_thread, words
from support import Db
from zapbase.db.pool import open_pool
from zapbase.hotmart import HOTTOK_HEADER, hotmart_path
from zapbase.hotmart.webhook import MAX_BODY_BYTES
from zapbase.settings import Settings
from zapbase.worker.http import create_app
from zapbase.worker.metrics import Metrics

Json = dict[str, Any]
EVENTS = {p.stem: json.loads(p.read_text()) for p in sorted(CORPUS.glob("*.json"))}
EVENT_IDS = [f"evt-{n}" for n in range(6)]
CODES = [f"HPFUZZ{n}" for n in range(4)]


@st.composite
def events(draw: st.DrawFn) -> Json:
    body = dated(EVENTS[draw(st.sampled_from(sorted(EVENTS)))], draw(st.integers(-40, 1)))
    body["id"] = draw(st.one_of(st.uuids().map(str), st.uuids().map(str), st.sampled_from(EVENT_IDS), words))
    purchase = body.get("data", {}).get("purchase")
    if isinstance(purchase, dict) and "transaction" in purchase:
        purchase["transaction"] = draw(st.sampled_from(CODES))
    if draw(st.booleans()):
        body["event"] = draw(
            st.sampled_from([e["event"] for e in EVENTS.values()])
        )  # a shape under another name
    mutated: Json = draw(mutated_tree(body))
    return mutated


deep = st.integers(1, 3000).map(lambda n: ("[" * n + "]" * n).encode())
raw = st.one_of(
    st.binary(max_size=200),
    deep,
    st.sampled_from(
        [
            b"null",
            b"[1, 2]",
            b'"texto"',
            b'{"n": NaN}',
            b"\xff\xfe{}",
            b'{"event": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}',
        ]
    ),
    st.builds(lambda v: json.dumps(v).encode(), st.one_of(odd, words)),
)
bodies = st.one_of(events(), events(), events(), raw)

COUNTS_SQL = """
select (select count(*) from public.hotmart_events) as events,
       (select count(*) from public.transactions) as transactions,
       (select count(*) from public.enrollments) as enrollments,
       (select count(*) from public.contacts) as contacts,
       (select count(*) from public.lesson_progress) as progress,
       (select count(*) from public.events) as outbox,
       (select coalesce(sum(ltv), 0) from public.contacts) as ltv
"""

INVARIANTS_SQL = """
select
  (select count(*) from public.hotmart_events
    where status not in ('applied', 'stored', 'failed', 'quarantined')) as not_settled,
  (select count(*) from public.hotmart_events
    where status in ('failed', 'quarantined') and coalesce(reason, '') = '') as kept_without_reason,
  (select count(*) from public.hotmart_events
    where status = 'failed' and (transaction_id is not null or contact_id is not null)) as failed_but_linked,
  (select count(*) from public.transactions t
    where not exists (select 1 from public.contacts c
                       where c.tenant_id = t.tenant_id and c.id = t.contact_id))
    as orphan_transactions,
  (select count(*) from public.contacts c
    where c.ltv is distinct from (
      select coalesce(sum(t.value) filter (where t.approved_at is not null), 0)
             - coalesce(sum(t.value) filter (where t.approved_at is not null
                                               and t.status in ('refunded', 'chargeback')), 0)
        from public.transactions t where t.contact_id = c.id and t.currency = c.currency)
      and exists (select 1 from public.transactions t where t.contact_id = c.id)) as ltv_off,
  (select count(*) from public.hotmart_events where tenant_id <> %(tenant)s) as other_tenant_rows
"""


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    """An event loop on a thread: hypothesis drives a synchronous test, the route is async."""
    with start_blocking_portal() as portal:
        yield portal


@pool_on_another_thread
def test_hotmart_route_keeps_every_body_and_applies_all_or_nothing(db: Db, portal: BlockingPortal) -> None:
    integration = create_integration(db)
    with contextlib.ExitStack() as stack:  # the pool closes before the database is dropped
        pool = stack.enter_context(portal.wrap_async_context_manager(open_pool(db.url, 2)))
        app = create_app(Settings(database_url=db.url), pool, Metrics())
        client = stack.enter_context(portal.wrap_async_context_manager(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker")
        ))  # fmt: skip
        run_fuzz(db, portal, client, integration)


def run_fuzz(db: Db, portal: BlockingPortal, client: httpx.AsyncClient, integration: str) -> None:
    headers = {"Content-Type": "application/json", HOTTOK_HEADER: HOTTOK}
    seen: dict[str, int] = {}

    @fuzz_settings()
    @given(bodies)
    def post_one(body: Json | bytes) -> None:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        before = db.sql(COUNTS_SQL)[0]
        response = portal.call(
            lambda: client.post(hotmart_path(integration), content=content, headers=headers)
        )
        after = db.sql(COUNTS_SQL)[0]
        shown = content[:3000].decode(errors="replace")
        assert response.status_code < 500, shown
        if len(content) > MAX_BODY_BYTES:
            assert response.status_code == 413 and after == before
            return
        assert (response.status_code, response.text) in {(200, "OK"), (200, "QUARANTINED")}, shown
        status = (
            db.value("select status from public.hotmart_events order by received_at desc, id limit 1")
            if after["events"] > before["events"]
            else "duplicate or quarantined again"
        )
        seen[status] = seen.get(status, 0) + 1
        if status not in ("applied", "stored"):  # failed, duplicate, quarantined: only the kept event
            assert {**after, "events": 0} == {**before, "events": 0}, shown
        broken = {k: v for k, v in db.sql(INVARIANTS_SQL, {"tenant": TENANT})[0].items() if v}
        assert broken == {}, shown

    post_one()
    # the generated bodies are not all refused: valid events did apply along the way
    assert seen.get("applied", 0) > 0, seen
