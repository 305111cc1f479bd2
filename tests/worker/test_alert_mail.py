"""The alert mailer against a real local SMTP server (aiosmtpd) with a login: alerts arrive
as e-mails to the tenant's notification addresses; a refused mailbox is final, a busy server
and a server that is down are retried; the runner (what `zapbase up` runs) sends as soon as
an alert is raised."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import anyio
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from loop_support import eventually
from pydantic import SecretStr

from support import Db
from whatsapp_db.webhooks import TENANT
from zapbase.db.embedded import free_port
from zapbase.db.pool import Pool
from zapbase.settings import Settings
from zapbase.worker.alerts import AlertMailer, SmtpConfig
from zapbase.worker.runner import Runner

# a local test server without TLS, so the login travels in the clear (aiosmtpd warns of it)
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

USER, PASSWORD = "zapbase", "s3nha-smtp"


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps what it accepts; some recipients answer 550 or 451."""

    refuse: dict[str, str] = field(default_factory=lambda: {
        "ninguem@lojademo.com.br": "550 5.1.1 mailbox unavailable",
        "cheia@lojademo.com.br": "451 4.2.2 mailbox full, try later",
    })  # fmt: skip
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:  # fmt: skip
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted"


def _login(server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, SmtpConfig]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=_login, auth_required=True,
                            auth_require_tls=False)  # fmt: skip
    controller.start()
    try:
        yield box, SmtpConfig(host="127.0.0.1", port=port, sender="Zapbase <alertas@zapbase.example>",
                              username=USER, password=PASSWORD, security="none", timeout=5)  # fmt: skip
    finally:
        controller.stop()


def notify(db: Db, *addresses: str) -> None:
    db.sql("update public.tenants set notification_emails = %s where id = %s", (list(addresses), TENANT))


def raise_alert(db: Db) -> str:
    alert_id: str = db.value(
        "insert into public.alerts (tenant_id, type, priority, title, message) values"
        " (%s, 'budget.threshold', 'critical', 'Orçamento de IA em 100%%',"
        " 'As respostas com IA ficam pausadas.') returning id", (TENANT,))  # fmt: skip
    return alert_id


def rows(db: Db) -> dict[str, dict[str, Any]]:
    return {r["email"]: r for r in db.sql("select * from public.alert_deliveries where channel = 'email'")}


async def test_alerts_are_mailed_and_refusals_are_final_or_retried(
        db: Db, pool: Pool, smtp: tuple[Mailbox, SmtpConfig]) -> None:
    box, config = smtp
    notify(db, "alertas@lojademo.com.br", "ninguem@lojademo.com.br", "cheia@lojademo.com.br")
    alert_id = raise_alert(db)
    mailer = AlertMailer(pool=pool, smtp=config, worker_id="test")
    assert await mailer.run_once() == 3
    [mail] = box.messages
    assert mail["To"] == "alertas@lojademo.com.br" and mail["From"] == "Zapbase <alertas@zapbase.example>"
    assert mail["Subject"] == "[Loja Demo] Orçamento de IA em 100%"
    delivered = rows(db)
    assert mail["Message-ID"] == f"<alert-{delivered['alertas@lojademo.com.br']['id']}@zapbase.example>"
    assert "As respostas com IA ficam pausadas." in mail.get_content()
    assert "Prioridade: crítica" in mail.get_content()
    assert delivered["alertas@lojademo.com.br"]["status"] == "succeeded"
    assert delivered["ninguem@lojademo.com.br"]["status"] == "failed"
    assert "550 5.1.1 mailbox unavailable" in delivered["ninguem@lojademo.com.br"]["last_error"]
    busy = delivered["cheia@lojademo.com.br"]
    assert busy["status"] == "pending" and "451 4.2.2 mailbox full" in busy["last_error"]
    assert db.value("select delivered_at from public.alerts where id = %s", (alert_id,)) is None

    box.refuse.clear()  # the mailbox has room again, and the retry is due
    db.sql("update public.alert_deliveries set next_attempt_at = now() where status = 'pending'")
    assert await mailer.run_once() == 1
    assert [m["To"] for m in box.messages] == ["alertas@lojademo.com.br", "cheia@lojademo.com.br"]
    assert rows(db)["cheia@lojademo.com.br"]["attempts"] == 2
    assert db.value("select delivered_at from public.alerts where id = %s", (alert_id,)) is not None


async def test_a_server_that_is_down_or_a_wrong_password_is_retried(
        db: Db, pool: Pool, smtp: tuple[Mailbox, SmtpConfig]) -> None:
    box, config = smtp
    notify(db, "alertas@lojademo.com.br")
    raise_alert(db)
    down = SmtpConfig(host="127.0.0.1", port=free_port(), sender=config.sender, security="none", timeout=5)
    assert await AlertMailer(pool=pool, smtp=down, worker_id="test").run_once() == 1
    row = rows(db)["alertas@lojademo.com.br"]
    assert row["status"] == "pending" and "SMTPConnectError" in row["last_error"]
    db.sql("update public.alert_deliveries set next_attempt_at = now()")
    wrong = SmtpConfig(host=config.host, port=config.port, sender=config.sender, username=USER,
                       password="errada", security="none", timeout=5)  # fmt: skip
    assert await AlertMailer(pool=pool, smtp=wrong, worker_id="test").run_once() == 1
    row = rows(db)["alertas@lojademo.com.br"]
    assert row["status"] == "pending" and "535" in row["last_error"]  # the operator fixes it; the alert waits
    assert box.messages == []


async def test_the_runner_mails_an_alert_as_soon_as_it_is_raised(
        db: Db, loop_settings: Settings, smtp: tuple[Mailbox, SmtpConfig]) -> None:
    box, config = smtp
    notify(db, "alertas@lojademo.com.br")
    settings = loop_settings.model_copy(update={
        "zapbase_smtp_host": config.host, "zapbase_smtp_port": config.port, "zapbase_smtp_security": "none",
        "zapbase_smtp_username": USER, "zapbase_smtp_password": SecretStr(PASSWORD),
        "zapbase_poll_interval_s": 60.0, "zapbase_scheduler": False,
    })  # fmt: skip
    runner = Runner(settings, serve_http=False, handle_signals=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        await runner.ready.wait()
        await anyio.sleep(0.5)  # LISTEN is up (its catch-up round found nothing)
        raise_alert(db)
        await eventually(lambda: len(box.messages) == 1, timeout=10, what="the alert e-mail")
        runner.stop()
    assert rows(db)["alertas@lojademo.com.br"]["status"] == "succeeded"
