"""The outbound sender against the simulator and the real queue functions: what lands on the
phone, the wamids recorded, Meta's errors turned into row states, crashes and replicas."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc
import httpx
import pytest
from loop_support import (
    MARIA,
    NUMBER,
    SIMULATOR_URL,
    TENANT,
    conversation_of,
    drain,
    eventually,
    make_due,
    queue,
    row,
    text,
)

from support import Db
from zapbase.db.pool import Pool, open_pool
from zapbase.simulator import SimulatedUser, Simulator
from zapbase.simulator import create_app as create_simulator
from zapbase.whatsapp import GraphAPI
from zapbase.worker.metrics import Metrics
from zapbase.worker.sender import UNKNOWN_OUTCOME_GRACE_S, OutboundRow, Sender, _SentRecorder, graph_body

pytestmark = pytest.mark.anyio

SenderFactory = Callable[..., Sender]


@pytest.fixture
def make_sender(pool: Pool, graph_api: GraphAPI, metrics: Metrics) -> SenderFactory:
    def make(worker_id: str = "sender-a", **options: int) -> Sender:
        return Sender(pool=pool, api=graph_api, metrics=metrics, worker_id=worker_id, **options)

    return make


@pytest.fixture
async def conversation(db: Db, maria: SimulatedUser) -> uuid.UUID:
    """Maria wrote, so her 24 h window is open."""
    assert (await maria.send_text("Oi, tudo bem?")).accepted
    return conversation_of(db, MARIA)


def failures(metrics: Metrics, code: str, retryable: str) -> float:
    value = metrics.registry.get_sample_value(
        "zapbase_send_failures_total", {"code": code, "retryable": retryable}
    )
    return value or 0.0


async def test_sends_land_in_the_phone_with_their_wamids_recorded(
    db: Db, sim: Simulator, maria: SimulatedUser, conversation: uuid.UUID,
    make_sender: SenderFactory, metrics: Metrics,
) -> None:  # fmt: skip
    inbound_id = db.value("select id from public.messages where direction = 'inbound'")
    inbound_wamid = db.value("select wamid from public.messages where direction = 'inbound'")
    buttons = {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Posso ajudar em algo mais?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "sim", "title": "Sim"}}]},
        },
    }
    template = {
        "type": "template",
        "template": {"name": "retomar_atendimento", "language": {"code": "pt_BR"}},
    }
    image = {"type": "image", "image": {"link": "https://example.com/catalogo.jpg", "caption": "Catálogo"}}
    reaction = {"type": "reaction", "reaction": {"message_id": inbound_wamid, "emoji": "✅"}}
    ids = [
        queue(db, conversation, text("Olá! Como posso ajudar?"), reply_to=inbound_id),
        queue(db, conversation, buttons),
        queue(db, conversation, template),
        queue(db, conversation, image),
        queue(db, conversation, reaction),
    ]

    # One message in flight per contact: each round sends the next one, in order.
    assert await drain(make_sender().run_once) == 5

    phone = maria.inbox
    assert [m.type for m in phone] == ["text", "interactive", "template", "image", "reaction"]
    assert phone[0].body["to"] == f"+{MARIA}"
    assert phone[0].body["context"] == {"message_id": inbound_wamid}
    assert "context" not in phone[1].body
    assert phone[1].content["action"]["buttons"][0]["reply"]["title"] == "Sim"
    assert phone[2].content["language"] == {"code": "pt_BR"}
    assert phone[3].content == {"link": "https://example.com/catalogo.jpg", "caption": "Catálogo"}
    assert phone[4].content == {"message_id": inbound_wamid, "emoji": "✅"}
    for message_id, received in zip(ids, phone, strict=True):
        stored = row(db, message_id)
        assert stored["wamid"] == received.wamid
        assert stored["status"] == "sent"
        assert stored["attempts"] == 1
        assert stored["lease_until"] is None
    assert metrics.registry.get_sample_value("zapbase_sent_messages_total") == 5
    assert metrics.registry.get_sample_value("zapbase_send_latency_seconds_count") == 5


async def test_a_username_user_is_addressed_by_recipient(
    db: Db, sim: Simulator, make_sender: SenderFactory
) -> None:
    contact = db.value(
        "insert into public.contacts (tenant_id, user_id, profile_name)"
        " values (%s, 'US.13491208655302741918', 'Ana') returning id",
        (TENANT,),
    )
    conversation = db.value(
        "insert into public.conversations (tenant_id, contact_id, whatsapp_number_id, window_expires_at)"
        " values (%s, %s, %s, now() + interval '1 hour') returning id",
        (TENANT, contact, NUMBER),
    )
    message_id = queue(db, conversation, text("Olá, Ana!"))

    assert await make_sender().run_once() == 1

    [received] = sim.inbox
    assert received.user_id == "US.13491208655302741918"
    assert received.body["recipient"] == "US.13491208655302741918"
    assert "to" not in received.body
    assert row(db, message_id)["wamid"] == received.wamid


@pytest.mark.parametrize(
    ("code", "http_status", "reason"),
    [
        (131047, None, "24 h window closed"),
        (131026, None, "undeliverable"),
    ],
)
async def test_a_permanent_error_fails_the_row_with_metas_code(
    db: Db, sim: Simulator, conversation: uuid.UUID, make_sender: SenderFactory,
    metrics: Metrics, code: int, http_status: int | None, reason: str,
) -> None:  # fmt: skip
    message_id = queue(db, conversation, text("Olá!"))
    sim.fail_next_send(code, http_status=http_status)

    assert await make_sender().run_once() == 1

    stored = row(db, message_id)
    assert (stored["status"], stored["error_code"], stored["wamid"]) == ("failed", code, None), reason
    assert stored["failed_at"] is not None and stored["next_attempt_at"] is None
    assert stored["error_title"] and stored["error_details"]
    assert sim.inbox == ()
    assert failures(metrics, str(code), "false") == 1
    assert db.value("select count(*) from public.alerts") == 0
    # Nothing is retried: the next round finds no work.
    make_due(db, message_id)
    assert await make_sender().run_once() == 0


async def test_throughput_limit_requeues_with_backoff_then_sends(
    db: Db, sim: Simulator, conversation: uuid.UUID, make_sender: SenderFactory, metrics: Metrics
) -> None:
    message_id = queue(db, conversation, text("Olá!"))
    sim.fail_next_send(130429)

    assert await make_sender().run_once() == 1

    stored = row(db, message_id)
    assert (stored["status"], stored["error_code"], stored["attempts"]) == ("queued", 130429, 1)
    delay = db.value("select extract(epoch from next_attempt_at - now()) from public.messages where id = %s",
                     (message_id,))  # fmt: skip
    assert 0 < delay <= 1.0  # 2^0 s after the first attempt
    assert failures(metrics, "130429", "true") == 1
    assert await make_sender().run_once() == 0  # not before its time

    make_due(db, message_id)
    assert await make_sender().run_once() == 1
    stored = row(db, message_id)
    assert stored["status"] == "sent" and stored["attempts"] == 2 and stored["error_code"] is None
    assert [m.wamid for m in sim.inbox] == [stored["wamid"]]


async def test_pair_rate_limit_backs_off_four_to_the_attempt(
    db: Db, sim: Simulator, conversation: uuid.UUID, make_sender: SenderFactory
) -> None:
    message_id = queue(db, conversation, text("Olá!"))
    sim.fail_next_send(131056, times=3)
    delays = []
    for _ in range(3):
        assert await make_sender().run_once() == 1
        assert row(db, message_id)["status"] == "queued"
        delays.append(db.value(
            "select extract(epoch from next_attempt_at - now()) from public.messages where id = %s",
            (message_id,),
        ))  # fmt: skip
        make_due(db, message_id)
    # Meta: retry after 4^X seconds, X = 0, 1, 2...
    for delay, expected in zip(delays, (1, 4, 16), strict=True):
        assert expected - 1 < delay <= expected
    assert row(db, message_id)["error_code"] == 131056


async def test_server_errors_are_retried_until_max_attempts(
    db: Db, sim: Simulator, conversation: uuid.UUID, make_sender: SenderFactory
) -> None:
    message_id = queue(db, conversation, text("Olá!"))
    sim.fail_next_send(http_status=503, times=5)
    for attempt in range(1, 6):
        assert await make_sender().run_once() == 1
        stored = row(db, message_id)
        assert stored["attempts"] == attempt
        make_due(db, message_id)
    # max_attempts (5) reached: failed for good, nothing sent.
    assert (stored["status"], stored["error_code"]) == ("failed", None)
    assert "HTTP 503" in stored["error_title"]
    assert sim.inbox == ()


async def test_expired_token_fails_and_alerts_the_tenant_once(
    db: Db, sim: Simulator, conversation: uuid.UUID, make_sender: SenderFactory
) -> None:
    first = queue(db, conversation, text("Olá!"))
    sim.fail_next_send(190, times=2)

    assert await make_sender().run_once() == 1
    second = queue(db, conversation, text("Tudo bem?"))
    assert await make_sender().run_once() == 1

    for message_id in (first, second):
        stored = row(db, message_id)
        assert (stored["status"], stored["error_code"]) == ("failed", 190)
    [alert] = db.sql("select * from public.alerts")
    assert str(alert["tenant_id"]) == TENANT
    assert alert["type"] == "whatsapp.error" and alert["priority"] == "critical"
    assert "token" in alert["title"]
    assert alert["dedupe_key"].startswith(f"whatsapp:{NUMBER}:190:")
    assert alert["payload"]["error"]["code"] == 190
    assert alert["payload"]["whatsapp_number_id"] == NUMBER


async def test_an_invalid_stored_payload_fails_without_a_call(
    db: Db, sim: Simulator, conversation: uuid.UUID, make_sender: SenderFactory
) -> None:
    # The queue refuses it too; a row stored before that rule (or written by hand) still must
    # not reach Meta: refused before any HTTP call.
    reaction = {"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}
    message_id = queue(db, conversation, reaction)
    db.sql("update public.messages set payload = jsonb_set(payload, '{reaction,message_id}', '\"\"')"
           " where id = %s", (message_id,))

    assert await make_sender().run_once() == 1

    stored = row(db, message_id)
    assert stored["status"] == "failed" and stored["error_title"] == "invalid stored payload"
    assert "reaction.message_id" in stored["error_details"]
    assert sim.inbox == ()


async def test_a_crashed_sender_row_is_sent_by_another_after_its_lease(
    db: Db, sim: Simulator, conversation: uuid.UUID, make_sender: SenderFactory
) -> None:
    message_id = queue(db, conversation, text("Olá!"))
    crashed = make_sender("sender-a", lease_seconds=1)
    [claimed] = await crashed.claim()  # ... and the process dies before sending
    assert claimed.message_id == message_id
    assert row(db, message_id)["leased_by"] == "sender-a"

    other = make_sender("sender-b")
    assert await other.run_once() == 0  # leased: nobody else may take it yet
    await anyio.sleep(1.1)
    assert await other.run_once() == 1

    stored = row(db, message_id)
    assert stored["status"] == "sent" and stored["attempts"] == 2
    assert [m.wamid for m in sim.inbox] == [stored["wamid"]]


async def test_a_sender_dying_after_meta_accepted_is_not_sent_again_once_a_status_names_the_row(
    db: Db, sim: Simulator, maria: SimulatedUser, conversation: uuid.UUID, graph_api: GraphAPI,
    make_sender: SenderFactory,
) -> None:  # fmt: skip
    message_id = queue(db, conversation, text("Olá!"))
    crashed = make_sender("sender-a", lease_seconds=1)
    [claimed] = await crashed.claim()
    # Meta accepts the send, and the process dies before whatsapp_mark_sent.
    await graph_api.send(claimed.phone_number_id, graph_body(claimed), token=claimed.access_token)
    [on_phone] = sim.inbox
    assert on_phone.callback_data == str(message_id)
    assert [d.accepted for d in await maria.acknowledge()] == [True, True]  # Meta's sent, delivered

    stored = row(db, message_id)
    assert (stored["status"], stored["wamid"]) == ("delivered", on_phone.wamid)
    await anyio.sleep(1.1)  # the dead sender's lease is over
    assert await make_sender("sender-b").run_once() == 0
    assert len(sim.inbox) == 1


class AcceptedThenTimedOut(httpx.AsyncBaseTransport):
    """Meta gets the send and accepts it; its answer never reaches the sender."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.inner.handle_async_request(request)
        raise httpx.ReadTimeout("no answer", request=request)


async def test_a_send_without_an_answer_waits_for_its_status_before_going_again(
    db: Db, sim: Simulator, maria: SimulatedUser, conversation: uuid.UUID, pool: Pool,
    make_sender: SenderFactory,
) -> None:  # fmt: skip
    message_id = queue(db, conversation, text("Olá!"))
    transport = AcceptedThenTimedOut(httpx.ASGITransport(app=create_simulator(simulator=sim)))
    async with httpx.AsyncClient(transport=transport, base_url=SIMULATOR_URL) as http:
        api = GraphAPI(http, base_url=SIMULATOR_URL)
        assert await Sender(pool=pool, api=api, metrics=Metrics(), worker_id="a").run_once() == 1
    stored = row(db, message_id)
    assert (stored["status"], stored["wamid"]) == ("queued", None)
    wait = db.value("select extract(epoch from next_attempt_at - now()) from public.messages where id = %s",
                    (message_id,))  # fmt: skip
    assert UNKNOWN_OUTCOME_GRACE_S - 1 < wait <= UNKNOWN_OUTCOME_GRACE_S  # not the 1 s backoff of a 5xx
    await maria.acknowledge()  # Meta's statuses arrive within the grace
    assert row(db, message_id)["wamid"] == sim.inbox[0].wamid
    make_due(db, message_id)
    assert await make_sender("b").run_once() == 0
    assert len(sim.inbox) == 1


async def test_cancelled_after_meta_accepted_still_records_the_wamid_and_never_resends(
    db: Db, sim: Simulator, conversation: uuid.UUID, graph_api: GraphAPI, make_sender: SenderFactory
) -> None:
    # A server that notices a dropped client even while a query waits for a lock, so a
    # cancelled (unshielded) write would be rolled back instead of finishing on its own.
    db.sql(f"alter database {db.url.rsplit('/', 1)[1]} set client_connection_check_interval = 50")
    message_id = queue(db, conversation, text("Olá!"))
    async with open_pool(db.url, 2) as pool:
        sender = Sender(pool=pool, api=graph_api, metrics=Metrics(), worker_id="sender-a", lease_seconds=1)
        [claimed] = await sender.claim()
        # Hold the row so whatsapp_mark_sent blocks right after Meta accepted the message.
        locker = db.connect()
        locker.execute("select 1 from public.messages where id = %s for update", (message_id,))
        release = threading.Timer(0.5, locker.commit)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender.send, claimed)
            await eventually(lambda: db.value(
                "select count(*) from pg_stat_activity"
                " where wait_event_type = 'Lock' and query like '%whatsapp_mark_sent%'"
            ) == 1, what="Meta's answer and the blocked whatsapp_mark_sent")  # fmt: skip
            assert len(sim.inbox) == 1
            tg.cancel_scope.cancel()  # shutdown / crash of the loop in that instant
            release.start()
        release.join()
        locker.close()

    stored = row(db, message_id)
    assert stored["status"] == "sent"
    assert stored["wamid"] == sim.inbox[0].wamid
    # The lease is long over: still nobody sends it again.
    await anyio.sleep(1.1)
    assert await make_sender("sender-b").run_once() == 0
    assert len(sim.inbox) == 1


async def test_two_replicas_never_send_the_same_row(
    db: Db, sim: Simulator, worker_http: httpx.AsyncClient, make_sender: SenderFactory
) -> None:
    phones = [SimulatedUser(sim, worker_http, wa_id=f"55119770000{n:02d}") for n in range(20)]
    for phone in phones:
        assert (await phone.send_text("Oi")).accepted
    for n in (1, 2, 3):  # one transaction each, so the three replies have distinct times
        with db.as_service() as s:
            s.all(
                "select public.whatsapp_queue_reply(c.id, jsonb_build_object('type', 'text', 'text',"
                " jsonb_build_object('body', 'Resposta ' || %s::int)), 'bot', null, null)"
                " from public.conversations c",
                (n,),
            )
    a, b = make_sender("sender-a", concurrency=7), make_sender("sender-b", concurrency=7)
    claimed = {"sender-a": 0, "sender-b": 0}

    async def replica(sender: Sender) -> None:
        idle = 0
        while idle < 3:
            count = await sender.run_once()
            claimed[sender.worker_id] += count
            idle = 0 if count else idle + 1
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(replica, a)
        tg.start_soon(replica, b)

    rows = db.sql("select wamid, status, attempts from public.messages where direction = 'outbound'")
    assert len(rows) == 60
    assert all(r["status"] == "sent" and r["attempts"] == 1 for r in rows)
    assert sorted(r["wamid"] for r in rows) == sorted(m.wamid for m in sim.inbox)
    assert sum(claimed.values()) == 60
    for phone in phones:  # in order, per contact
        assert [m.text for m in phone.inbox] == ["Resposta 1", "Resposta 2", "Resposta 3"]


async def test_outbound_row_reads_every_claimed_column(db: Db) -> None:
    # The claim's columns and the dataclass must not drift apart.
    with db.connect() as conn:
        cur = conn.execute("select * from public.whatsapp_claim_outbound('nobody', 0, 1)")
        columns = {column.name for column in cur.description or []}
    assert columns == set(OutboundRow.__slots__)


def claimed(n: int) -> OutboundRow:
    return OutboundRow(message_id=uuid.UUID(int=n), tenant_id=uuid.UUID(TENANT),
                       conversation_id=uuid.UUID(int=n), whatsapp_number_id=uuid.UUID(NUMBER),
                       phone_number_id="1", access_token="t", to_wa_id=MARIA, to_user_id=None, payload={},
                       reply_to_wamid=None, attempts=1)


async def test_answers_arriving_during_a_recording_are_recorded_together_by_the_next() -> None:
    calls: list[list[str]] = []
    slow = [anyio.Event(), anyio.Event()]  # the database answers the first two recordings late
    outcomes: dict[int, str] = {}

    async def record(sent: list[tuple[OutboundRow, str]]) -> set[uuid.UUID]:
        calls.append([wamid for _, wamid in sent])
        if len(calls) <= len(slow):
            await slow[len(calls) - 1].wait()
        if "wamid.4" in calls[-1]:
            raise ConnectionError("the database stayed away for the whole lease")
        return {row.message_id for row, wamid in sent if wamid != "wamid.3"}  # row 3 no longer exists

    recorder = _SentRecorder(record)

    async def answer(n: int) -> None:
        try:
            await recorder.record(claimed(n), f"wamid.{n}")
            outcomes[n] = "recorded"
        except (LookupError, ConnectionError) as exc:
            outcomes[n] = type(exc).__name__

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer, 1)
        await anyio.wait_all_tasks_blocked()
        for n in (2, 3):  # come while 1 is being recorded
            tg.start_soon(answer, n)
        await anyio.wait_all_tasks_blocked()
        slow[0].set()
        await anyio.wait_all_tasks_blocked()
        for n in (4, 5):  # come while 2 and 3 are being recorded
            tg.start_soon(answer, n)
        await anyio.wait_all_tasks_blocked()
        slow[1].set()
    # one recording at a time; what came meanwhile goes in the next one, and every answer
    # learns how its own recording ended
    assert calls == [["wamid.1"], ["wamid.2", "wamid.3"], ["wamid.4", "wamid.5"]]
    assert outcomes == {1: "recorded", 2: "recorded", 3: "LookupError",
                        4: "ConnectionError", 5: "ConnectionError"}  # fmt: skip


class DroppingProxy:
    """A TCP proxy to PostgreSQL that drops the connection carrying the first query that
    contains `cut_on`, before the server sees it: the database restarting mid-statement."""

    def __init__(self, url: str, cut_on: bytes) -> None:
        parts = urlsplit(url)
        self._target, self._parts, self._cut_on = parts.port or 5432, parts, cut_on
        self.cuts = 0
        self.url = ""

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - not Django
            host = self._parts.netloc.rsplit(":", 1)[0]
            self.url = urlunsplit(self._parts._replace(netloc=f"{host}:{port}"))
            task_status.started()
            await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            async with (client, await anyio.connect_tcp("127.0.0.1", self._target) as server,
                        anyio.create_task_group() as tg):

                async def upstream() -> None:
                    async for chunk in client:
                        if self.cuts == 0 and self._cut_on in chunk:
                            self.cuts += 1
                            tg.cancel_scope.cancel()  # both sockets close: the client sees EOF
                            return
                        await server.send(chunk)
                    tg.cancel_scope.cancel()

                async def downstream() -> None:
                    async for chunk in server:
                        await client.send(chunk)
                    tg.cancel_scope.cancel()

                tg.start_soon(upstream)
                tg.start_soon(downstream)


async def test_the_database_dropping_right_after_meta_accepted_still_records_the_wamid(
    db: Db, sim: Simulator, conversation: uuid.UUID, graph_api: GraphAPI, make_sender: SenderFactory
) -> None:
    message_id = queue(db, conversation, text("Olá!"))
    proxy = DroppingProxy(db.url, b"whatsapp_mark_sent")
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        async with open_pool(proxy.url, 2) as pool:
            sender = Sender(pool=pool, api=graph_api, metrics=Metrics(), worker_id="a", lease_seconds=1)
            assert await sender.run_once() == 1
        tg.cancel_scope.cancel()
    assert proxy.cuts == 1
    stored = row(db, message_id)
    assert stored["status"] == "sent" and stored["wamid"] == sim.inbox[0].wamid
    # The lease is long over: nobody sends it again.
    await anyio.sleep(1.1)
    assert await make_sender("sender-b").run_once() == 0
    assert len(sim.inbox) == 1
