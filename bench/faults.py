"""Fault run: a steady load of signed webhooks through the worker while its parts fail.

    python bench/faults.py              # about 1-2 minutes
    python bench/faults.py --seconds 300 --rate 40

Everything is local: an embedded PostgreSQL, the worker as its own process (`zapbase up`,
so it can be killed with SIGKILL), and in this process the WhatsApp simulator (Meta's
stand-in, counting every send it accepts) and the zero-latency Anthropic and OpenAI
stand-ins. Customers write text messages; the load generator retries a webhook that did
not get a 2xx, as Meta does (the simulator redelivers its status webhooks the same way).
During the load, in turn:

  * Anthropic answers 500 to 30 calls in a row: the bot's chain must fall back to OpenAI;
  * the Graph API answers 5xx, then 429 (130429), for a while;
  * the PostgreSQL server restarts;
  * a burst of webhooks at once (Meta catching up after an outage) goes to the backlog, and
    the worker is killed with SIGKILL while it applies the backlog, and started again;
  * the worker is killed with SIGKILL right after a send, and started again;
  * the worker is killed with SIGKILL while the model answers a customer (that customer's
    calls made slow, so the kill lands inside the call), and started again.

Then it waits for the queues to drain and checks: every acknowledged inbound message
stored once, every send accepted by the simulator recorded on exactly one outbound row
(none sent twice), every outbound row sent or failed with its reason, every inbound
message processed, and the budgets equal to the usage log; the message being answered at
the last SIGKILL got exactly one reply once its lease ran out, and the budget reservation
of the call cut short was given back when it expired (which the run waits for: about 3-5
minutes in all).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import psycopg
import uvicorn
from psycopg.rows import dict_row
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zapbase.db.embedded import free_port
from zapbase.db.scratch import build_template, clone_database, scratch_server
from zapbase.settings import Settings, find_project_dir
from zapbase.simulator import DEMO_NUMBER, Simulator, SimulatorConfig, create_app
from zapbase.simulator import webhooks as wh
from zapbase.simulator.state import DEMO_APP_SECRET
from zapbase.standins.ai import AnthropicStandIn, Fault, FaultKind, OpenAIStandIn
from zapbase.whatsapp.signature import HEADER, sign
from zapbase.worker.http import webhook_path
from zapbase.worker.runner import EmbeddedServer

LOG = Path(tempfile.gettempdir()) / "zapbase-faults.log"
CONTACTS = 150
CONCURRENCY = 8
# Leases as short as the worker allows, so that work a killed worker held comes back soon.
SEND_LEASE_S, PROCESS_LEASE_S = 55, 65
LLM_FAILURES = 30
# Meta redelivers a status webhook for days; here long enough to outlast a worker restart.
STATUS_RETRY_S = 120
# The customer whose reply is being generated when the worker is killed: their own number,
# so the replies they get can be counted; the model takes MODEL_DELAY_S over their message.
BURST = 400  # webhooks sent at once
BURST_KILL_AT = 50  # bodies waiting in the backlog when the worker is killed
PROBE_WA_ID = "5511977770000"
PROBE_TEXT = "Oi, pedido sonda: qual o prazo de entrega?"
PROBE_WAMID = "wamid.fault.midreply"
MODEL_DELAY_S = 5.0  # under the policy's 20 s timeout: the call is cut by the kill, not by it
# The reply reservation of the probe's message, taken right before its model call.
PROBE_RESERVATION = """
select r.id, r.status, r.expires_at from public.budget_reservations r
  join public.messages m on m.tenant_id = r.tenant_id and m.id = r.message_id
 where m.wamid = %s and r.feature = 'reply' and r.status = 'open'
"""


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Worker:
    """`zapbase up` in its own process, logging to LOG."""

    def __init__(self, env: dict[str, str], http_url: str) -> None:
        self.env, self.http_url = env, http_url
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with LOG.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "zapbase.cli", "up"], env=self.env,
                                            cwd=find_project_dir(), stdout=log, stderr=log)
        async with httpx.AsyncClient(timeout=2) as http:
            with anyio.fail_after(90):
                while True:
                    assert self.process.poll() is None, f"the worker exited; see {LOG}"
                    try:
                        if (await http.get(f"{self.http_url}/readyz")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.2)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class SlowCalls:
    """ASGI wrapper of a model stand-in: while armed, a call whose body holds `marker` waits
    `seconds` before the stand-in answers; `in_flight` counts those waiting."""

    def __init__(self, app: ASGIApp, marker: bytes, seconds: float) -> None:
        self.app, self.marker, self.seconds = app, marker, seconds
        self.armed = False
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.armed:
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        while not received or received[-1].get("more_body"):
            received.append(await receive())
        if any(self.marker in m.get("body", b"") for m in received):
            self.in_flight += 1
            try:
                await anyio.sleep(self.seconds)
            finally:
                self.in_flight -= 1
        replay = iter(received)

        async def again() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, again, send)


class Load:
    """Customers writing text messages at `rate` per second; each webhook is retried until
    the worker answers 2xx (Meta retries for hours; here until the run ends)."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate = url, rate
        self.acknowledged: list[str] = []
        self.attempts = Counter[int | str]()
        self.pending = 0
        self.done = anyio.Event()

    async def deliver(self, http: httpx.AsyncClient, wamid: str, wa_id: str, text: str,
                      deadline: float) -> None:
        message = wh.inbound_message(wa_id=wa_id, wamid=wamid, timestamp=int(time.time()), kind="text",
                                     content={"body": text})
        body = wh.encode(wh.notification(DEMO_NUMBER, wh.inbound_value(
            wa_id=wa_id, name=f"Cliente {wa_id[-4:]}", message=message)))
        headers = {"Content-Type": "application/json", HEADER: sign(body, DEMO_APP_SECRET)}
        backoff = 0.25
        while time.monotonic() < deadline:
            try:
                status: int | str = (await http.post(self.url, content=body, headers=headers)).status_code
            except httpx.TransportError as exc:
                status = type(exc).__name__
            self.attempts[status] += 1
            if isinstance(status, int) and 200 <= status < 300:
                self.acknowledged.append(wamid)
                return
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 4.0)
        self.pending += 1

    async def run(self, seconds: float, retry_until: float) -> None:
        limiter = anyio.CapacityLimiter(CONCURRENCY * 4)
        async with httpx.AsyncClient(timeout=10) as http, anyio.create_task_group() as tg:
            began = time.monotonic()
            for n in itertools.count():
                at = began + n / self.rate
                if at - began >= seconds:
                    break
                await anyio.sleep(max(0.0, at - time.monotonic()))

                async def one(n: int = n) -> None:
                    async with limiter:
                        await self.deliver(http, f"wamid.fault.{n}", f"55119{n % CONTACTS:08d}",
                                           f"Oi, pedido {n}: qual o prazo de entrega?", retry_until)

                tg.start_soon(one)
        self.done.set()


async def serve(app: object, port: int, tg: anyio.abc.TaskGroup) -> EmbeddedServer:
    server = EmbeddedServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",  # type: ignore[arg-type]
                                           lifespan="off"))
    tg.start_soon(server.serve)
    while not server.started:
        await anyio.sleep(0.02)
    return server


async def window(what: str, start: Callable[[], None], stop: Callable[[], None], seconds: float) -> None:
    say(f"fault: {what} for {seconds:.0f} s")
    start()
    await anyio.sleep(seconds)
    stop()
    say(f"fault over: {what}")


def query(url: str, sql: str, params: tuple[object, ...] | None = None) -> list[dict[str, object]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def unfinished(url: str) -> int:
    """Webhook bodies not applied yet, inbound messages not processed, replies not sent."""
    [row] = query(url, "select (select count(*) from public.inbound_backlog)"
                       " + (select count(*) from public.messages where"
                       " (direction = 'inbound' and status in ('received', 'processing'))"
                       " or (direction = 'outbound' and status in ('queued', 'sending'))) n")
    return int(row["n"])  # type: ignore[call-overload]


class Burst:
    """Meta catching up after an outage: BURST webhooks at once, the worker killed with
    SIGKILL while it applies the backlog they made."""

    def __init__(self) -> None:
        self.peak = 0  # the largest backlog seen

    async def run(self, url: str, worker: Worker, load: Load, http: httpx.AsyncClient,
                  deadline: float) -> None:
        say(f"fault: a burst of {BURST} webhooks at once; the worker killed with SIGKILL while it"
            " applies the backlog")
        async with anyio.create_task_group() as tg:
            for n in range(BURST):
                tg.start_soon(load.deliver, http, f"wamid.fault.burst.{n}", f"55117{n % CONTACTS:08d}",
                              f"Oi, pedido {n} de novo: qual o prazo?", deadline)
            with anyio.fail_after(60):
                while (waiting := self.backlogged(url)) < BURST_KILL_AT:
                    self.peak = max(self.peak, waiting)
                    await anyio.sleep(0.005)
            self.peak = max(self.peak, waiting)
            worker.kill()  # the transaction applying a batch is cut: its bodies stay in the backlog
            say(f"  killed with {waiting} bodies in the backlog")
            await anyio.sleep(2)
            await worker.start()
            say("fault over: worker restarted")

    @staticmethod
    def backlogged(url: str) -> int:
        [row] = query(url, "select count(*) n from public.inbound_backlog")
        return int(row["n"])  # type: ignore[call-overload]


class MidReply:
    """The SIGKILL that lands while the model answers the probe customer's message."""

    def __init__(self, slow: list[SlowCalls]) -> None:
        self.slow = slow
        self.asked_at = 0.0
        self.reservation: dict[str, object] = {}

    async def run(self, url: str, worker: Worker, load: Load, http: httpx.AsyncClient,
                  deadline: float) -> None:
        for s in self.slow:
            s.armed = True
        say(f"fault: worker killed with SIGKILL while the model answers (it takes {MODEL_DELAY_S:g} s"
            " over the probe customer's message)")
        self.asked_at = time.time()
        await load.deliver(http, PROBE_WAMID, PROBE_WA_ID, PROBE_TEXT, deadline)
        with anyio.fail_after(300):  # the message waits its turn behind the backlog
            # the reply's reservation is taken, and its model call is waiting at a stand-in
            while not (found := query(url, PROBE_RESERVATION, (PROBE_WAMID,))) or not any(
                    s.in_flight for s in self.slow):
                await anyio.sleep(0.05)
        await anyio.sleep(0.5)
        worker.kill()
        [self.reservation] = found
        for s in self.slow:
            s.armed = False
        await anyio.sleep(2)
        await worker.start()
        say("fault over: worker restarted (the message comes back when its lease runs out)")

    async def settled(self, url: str) -> None:
        """Waits until the killed call's reservation is no longer open (it expires, then the
        worker's minute job or the tenant's next reservation gives its estimate back)."""
        expires_at = self.reservation["expires_at"].timestamp()  # type: ignore[attr-defined]
        while query(url, "select 1 from public.budget_reservations where id = %s and status = 'open'",
                    (self.reservation["id"],)) and time.time() < expires_at + 90:
            await anyio.sleep(2)

    def check(self, url: str, sim: Simulator, line: Callable[[str, object, bool], None]) -> None:
        [killed] = query(url, "select r.status, r.estimated_tokens, (select count(*) from public.ai_usage u"
                              " where u.reservation_id = r.id) usage_rows"
                              " from public.budget_reservations r where r.id = %s", (self.reservation["id"],))
        line("reservation of the call cut by the SIGKILL", f"{killed['status']} ({killed['estimated_tokens']}"
             f" tokens given back, {killed['usage_rows']} usage rows)",
             killed["status"] in ("expired", "released") and killed["usage_rows"] == 0)
        [queued] = query(url, "select count(*) n from public.messages o join public.messages m"
                              " on m.conversation_id = o.conversation_id and o.created_at > m.created_at"
                              " where m.wamid = %s and o.direction = 'outbound'", (PROBE_WAMID,))
        received = [m for m in sim.messages_to(PROBE_WA_ID) if m.received_at >= self.asked_at]
        line("replies to the message being answered at the SIGKILL (queued, received)",
             f"{queued['n']}, {len(received)}", queued["n"] == 1 and len(received) == 1)


def check(url: str, load: Load, sim: Simulator, anthropic: AnthropicStandIn, killed_at: float,
          mid_reply: MidReply, burst: Burst) -> bool:
    """Print the figures; True when every check holds."""
    ok = True

    def line(what: str, value: object, good: bool) -> None:
        nonlocal ok
        ok &= good
        print(f"  {'ok  ' if good else 'FAIL'} {what}: {value}")

    ours = "from public.messages where direction = 'inbound' and wamid like 'wamid.fault.%'"
    [inbound] = query(url, "select count(*) stored, count(distinct wamid) distinct_wamids,"
                           " count(*) filter (where status not in ('processed', 'ignored', 'failed'))"
                           " unfinished,"
                           " count(*) filter (where status = 'failed' and error_details is null) no_reason "
                           + ours)
    stored = query(url, "select wamid " + ours)
    lost = set(load.acknowledged) - {str(r["wamid"]) for r in stored}
    outbound = query(url, "select status, count(*) n, count(*) filter (where status = 'failed'"
                          " and error_code is null and error_title is null) no_reason"
                          " from public.messages where direction = 'outbound' group by status")
    wamids = Counter(str(r["wamid"]) for r in query(
        url, "select wamid from public.messages where direction = 'outbound' and wamid is not null"))
    accepted = Counter(m.wamid for m in sim.inbox)
    unrecorded = [w for w in accepted if w not in wamids]
    by_row = Counter((m.wa_id, m.text) for m in sim.inbox)
    [budget] = query(url, """
        select coalesce(sum(b.used_tokens), 0) used,
               -- a cache hit is logged with its counts but charges nothing
               coalesce(sum((select sum(u.total_tokens) from public.ai_usage u where u.tenant_id = b.tenant_id
                  and u.created_at >= b.period_start and u.created_at < b.period_end
                  and u.outcome <> 'cache_hit')), 0) logged,
               coalesce(sum((select count(*) from public.ai_usage u where u.tenant_id = b.tenant_id
                  and u.created_at >= b.period_start and u.created_at < b.period_end
                  and u.outcome = 'cache_hit')), 0) cache_hits,
               coalesce(sum(b.reserved_tokens), 0) reserved,
               coalesce(sum((select sum(r.estimated_tokens) from public.budget_reservations r
                  where r.status = 'open' and b.id = any (r.budget_ids))), 0) open_estimates,
               count(*) budgets
          from public.budgets b where b.is_active""")
    [usage] = query(url, "select"
                         " count(*) filter (where provider = 'anthropic' and outcome = 'failure')"
                         " anthropic_failed,"
                         " count(*) filter (where provider = 'openai' and outcome = 'success') openai_ok,"
                         " count(*) filter (where fallback_from is not null and outcome = 'success')"
                         " fell_back"
                         " from public.ai_usage where api_type = 'chat'")

    print("\nFault run results")
    print(f"  webhook POST answers: {dict(load.attempts)}")
    print(f"  largest webhook backlog during the burst: {burst.peak}")
    line("inbound acknowledged vs stored", f"{len(load.acknowledged)} vs {inbound['stored']}"
         f" ({inbound['distinct_wamids']} distinct), lost {len(lost)}",
         not lost and inbound["stored"] == inbound["distinct_wamids"])
    line("inbound still unacknowledged when the run ended", load.pending, load.pending == 0)
    line("inbound not processed (received/processing)", inbound["unfinished"], inbound["unfinished"] == 0)
    line("inbound failed without a reason", inbound["no_reason"], inbound["no_reason"] == 0)
    print(f"  outbound rows by status: { {r['status']: r['n'] for r in outbound} }")
    unsettled = sum(int(r["n"]) for r in outbound if r["status"] in ("queued", "sending"))  # type: ignore[call-overload]
    line("outbound still queued/sending", unsettled, unsettled == 0)
    line("outbound failed without a reason", sum(r["no_reason"] for r in outbound),  # type: ignore[misc]
         all(r["no_reason"] == 0 for r in outbound))
    line("sends accepted at the simulator vs distinct wamids", f"{sum(accepted.values())} vs {len(accepted)}",
         sum(accepted.values()) == len(accepted))
    line("sends accepted but on no outbound row (sent twice)", len(unrecorded), not unrecorded)
    in_flight = [m.wamid for m in sim.inbox if killed_at - 2 <= m.received_at <= killed_at]
    print(f"    sends accepted in the 2 s before the SIGKILL: {len(in_flight)}, recorded on their row:"
          f" {sum(w in wamids for w in in_flight)} (by the sender, or by the status webhook whose"
          " callback data names the row when the sender died first)")
    line("outbound rows naming one wamid twice", sum(n - 1 for n in wamids.values()),
         all(n == 1 for n in wamids.values()))
    print(f"  same (customer, body) received more than once: {sum(n - 1 for n in by_row.values())}"
          " (the stand-in model answers every question alike, so repeats are expected here)")
    line("LLM fallback took over", f"{usage['anthropic_failed']} Anthropic failures,"
         f" {usage['fell_back']} replies by a fallback, {usage['openai_ok']} by OpenAI",
         int(usage["fell_back"]) > 0)  # type: ignore[call-overload]
    line(f"budget used tokens vs ai_usage sum ({budget['budgets']} active budgets)",
         f"{budget['used']} vs {budget['logged']} ({budget['cache_hits']} cache hits, not charged)",
         budget["used"] == budget["logged"])
    line("budget reserved tokens vs open reservations", f"{budget['reserved']} vs {budget['open_estimates']}",
         budget["reserved"] == budget["open_estimates"])
    mid_reply.check(url, sim, line)
    print(f"  Anthropic faults left unconsumed: {len(anthropic.script)}")
    return ok


async def run(seconds: float, rate: float) -> bool:
    LOG.write_text("")
    settings = Settings()
    with scratch_server() as server:
        url = clone_database(server, build_template(server, settings), "faults")
        http_port, sim_port, anthropic_port, openai_port = (free_port() for _ in range(4))
        http_url = f"http://127.0.0.1:{http_port}"
        sim = Simulator(SimulatorConfig(numbers=(DEMO_NUMBER,), auto_statuses=True,
                                        webhook_retry_s=STATUS_RETRY_S,
                                        webhook_url=f"{http_url}{webhook_path(DEMO_NUMBER.phone_number_id)}"))
        anthropic, openai = AnthropicStandIn(), OpenAIStandIn()
        home = Path(tempfile.mkdtemp(prefix="zapbase-faults-"))
        keep = ("ZAPBASE_", "DATABASE_URL", "GRAPH_", "OPENAI_", "ANTHROPIC_")
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(keep)}
        env.update({
            "DATABASE_URL": url, "ZAPBASE_HOME": str(home / "home"), "ZAPBASE_MEDIA_DIR": str(home / "media"),
            "ZAPBASE_HTTP_PORT": str(http_port), "GRAPH_API_BASE_URL": f"http://127.0.0.1:{sim_port}",
            "ANTHROPIC_API_KEY": "sk-ant-local", "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{anthropic_port}",
            "OPENAI_API_KEY": "sk-local", "OPENAI_BASE_URL": f"http://127.0.0.1:{openai_port}",
            "ZAPBASE_SEND_LEASE_S": str(SEND_LEASE_S), "ZAPBASE_PROCESS_LEASE_S": str(PROCESS_LEASE_S),
        })  # fmt: skip
        worker = Worker(env, http_url)
        load = Load(f"{http_url}{webhook_path(DEMO_NUMBER.phone_number_id)}", rate)
        slow = [SlowCalls(anthropic.app, PROBE_TEXT.encode(), MODEL_DELAY_S),
                SlowCalls(openai.app, PROBE_TEXT.encode(), MODEL_DELAY_S)]
        mid_reply = MidReply(slow)
        burst = Burst()
        async with httpx.AsyncClient(timeout=10) as sim_http, anyio.create_task_group() as tg:
            servers = [await serve(create_app(simulator=sim, client=sim_http), sim_port, tg),
                       await serve(slow[0], anthropic_port, tg), await serve(slow[1], openai_port, tg)]
            try:
                await worker.start()
                say(f"worker up; load {rate:g} webhooks/s for {seconds:.0f} s from {CONTACTS} customers;"
                    f" worker log {LOG}")
                retry_until = time.monotonic() + seconds + PROCESS_LEASE_S + 30
                tg.start_soon(load.run, seconds, retry_until)
                # the probe customer's first message: the welcome is behind them
                await load.deliver(sim_http, f"{PROBE_WAMID}.first", PROBE_WA_ID,
                                   "Oi, tudo bem com meu pedido?", retry_until)
                step = seconds / 10
                await anyio.sleep(step)
                say(f"fault: Anthropic answers 500 to its next {LLM_FAILURES} calls (the chain cools it)")
                anthropic.push(*[Fault(kind=FaultKind.SERVER_ERROR)] * LLM_FAILURES)
                await window("Graph API answers 503", lambda: sim.fail_next_send(
                    131016, times=100_000), sim._send_faults.clear, step)
                await window("Graph API answers 429 (130429)", lambda: sim.fail_next_send(
                    130429, http_status=429, times=100_000), sim._send_faults.clear, step)
                say("fault: PostgreSQL restarts")
                server.stop()
                await anyio.sleep(2)
                server.start()
                say("fault over: PostgreSQL is back")
                await anyio.sleep(step)
                await burst.run(url, worker, load, sim_http, retry_until)
                await anyio.sleep(step)
                sent = len(sim.inbox)
                with anyio.fail_after(60):
                    while len(sim.inbox) == sent:  # right after a send: the worker is mid-send
                        await anyio.sleep(0.001)
                say("fault: worker killed with SIGKILL right after a send")
                worker.kill()
                killed_at = time.time()
                await anyio.sleep(2)
                await worker.start()
                say("fault over: worker restarted")
                await mid_reply.run(url, worker, load, sim_http, retry_until)
                await load.done.wait()
                say("load over; waiting for the queues to drain")
                # until empty, or no progress for longer than a lease of the killed worker lasts
                left, progress_at = unfinished(url), time.monotonic()
                while left and time.monotonic() - progress_at < PROCESS_LEASE_S + 30:
                    await anyio.sleep(1)
                    if (now_left := unfinished(url)) < left:
                        left, progress_at = now_left, time.monotonic()
                await mid_reply.settled(url)
                await anyio.sleep(3)  # the last statuses
                return check(url, load, sim, anthropic, killed_at, mid_reply, burst)
            finally:
                worker.stop()
                shutil.rmtree(home, ignore_errors=True)
                for s in servers:
                    s.should_exit = True


def main() -> None:
    logging.basicConfig(filename=LOG, level=logging.WARNING)  # the simulator's undelivered statuses
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the load (default 60)")
    parser.add_argument("--rate", type=float, default=20, help="webhooks per second (default 20)")
    args = parser.parse_args()
    sys.exit(0 if anyio.run(run, args.seconds, args.rate) else 1)


if __name__ == "__main__":
    main()
