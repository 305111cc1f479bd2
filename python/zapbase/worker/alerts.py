"""The alert mailer: e-mails tenants' alerts to their notification addresses through SMTP.

Each round claims up to `concurrency` e-mail rows of `alert_deliveries` with `alerts_claim`
(SKIP LOCKED, leased), sends one message per row and records each attempt with
`alerts_record`: a timeout, a lost connection, a 4xx answer or a refused login is retried on
the webhooks' schedule; a 5xx refusal of the recipient or of the message is final. Push rows are left to a
push sender: Zapbase itself sends no FCM / APNs / Web Push.

Each message carries the Message-ID `<alert-<delivery id>@<sender's domain>>`, the same on
every attempt: a retry after a sender was killed mid-send shows as one message in clients
that thread by it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, Literal

import aiosmtplib
import anyio

from zapbase.db.pool import Pool
from zapbase.settings import Settings
from zapbase.worker.loop import QueueLoop, record_outcome

__all__ = ["AlertMailer", "MailRow", "SmtpConfig", "compose", "send_mail"]

_logger = logging.getLogger(__name__)

PRIORITY_PT = {"low": "baixa", "medium": "média", "high": "alta", "critical": "crítica"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    """Where and how alert e-mails leave: `security` is starttls (port 587), tls (465) or
    none (a local relay); `timeout` bounds the whole exchange."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    timeout: float = 15.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        """None when no SMTP host is configured (alert e-mails then wait for a worker that has one)."""
        if not settings.zapbase_smtp_host:
            return None
        password = settings.zapbase_smtp_password
        return cls(host=settings.zapbase_smtp_host, port=settings.zapbase_smtp_port,
                   sender=settings.zapbase_smtp_from, username=settings.zapbase_smtp_username,
                   password=password.get_secret_value() if password else None,
                   security=settings.zapbase_smtp_security)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class MailRow:
    """One claimed e-mail row of `alerts_claim`."""

    delivery_id: uuid.UUID
    tenant_id: uuid.UUID
    alert_id: uuid.UUID
    email: str
    attempt: int
    tenant_name: str
    type: str
    priority: str
    title: str
    message: str | None
    raised_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MailRow:
        return cls(**{name: row[name] for name in cls.__slots__})


def compose(row: MailRow, sender: str) -> EmailMessage:
    """The e-mail of one alert to one address (pt-BR, plain text)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "zapbase.local"
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = row.email
    mail["Subject"] = f"[{row.tenant_name}] {row.title}"
    mail["Date"] = format_datetime(row.raised_at)
    mail["Message-ID"] = f"<alert-{row.delivery_id}@{domain}>"
    mail["X-Zapbase-Alert"] = f"{row.type}; id={row.alert_id}; priority={row.priority}"
    mail.set_content(
        f"{row.title}\n\n{row.message or ''}\n\n"
        f"Prioridade: {PRIORITY_PT.get(row.priority, row.priority)}\n"
        f"Tipo: {row.type}\n"
        f"Empresa: {row.tenant_name}\n\n"
        "Você recebe este e-mail porque este endereço está entre os e-mails de notificação da empresa"
        " no Zapbase.\n"
    )
    return mail


async def send_mail(config: SmtpConfig, mail: EmailMessage) -> tuple[str | None, bool]:
    """Send one message; (None, _) when the server accepted it, else (error, retryable)."""
    try:
        with anyio.fail_after(config.timeout):
            await aiosmtplib.send(
                mail, hostname=config.host, port=config.port, username=config.username,
                password=config.password, use_tls=config.security == "tls",
                start_tls=config.security == "starttls", timeout=config.timeout,
            )  # fmt: skip
    except TimeoutError:
        return f"timed out after {config.timeout:.0f} s", True
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refusals = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        return f"recipient refused: {refusals}", min(r.code for r in exc.recipients) < 500
    except aiosmtplib.SMTPResponseException as exc:
        # Only the message itself refused for good is final; a 5xx to the login or the sender
        # is the operator's configuration, and the alert waits for it to be fixed.
        refused = isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError)
        final = refused and exc.code >= 500
        return f"{type(exc).__name__}: {exc.code} {exc.message}", not final
    except (aiosmtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}".rstrip(": "), True
    return None, False


class AlertMailer(QueueLoop):
    """The alert e-mail loop of one replica.

    **Parameters**

    * **pool** - service-role connections.
    * **smtp** - the SMTP server and credentials.
    * **worker_id** - this replica's name in `leased_by`.
    * **concurrency** - rows claimed per round, sent at once.
    * **lease_seconds**, **poll_interval** - the claim's lease (well above the SMTP timeout)
      and the poll when no NOTIFY arrives (retries become due silently).
    """

    def __init__(self, *, pool: Pool, smtp: SmtpConfig, worker_id: str, concurrency: int = 4,
                 lease_seconds: int = 60, poll_interval: float = 2.0) -> None:  # fmt: skip
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._smtp = smtp
        self.worker_id = worker_id
        self._batch_size = concurrency
        self._lease_seconds = lease_seconds

    async def run_once(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute("select * from public.alerts_claim(%s, '{email}', %s, %s)",
                                     (self.worker_id, self._batch_size, self._lease_seconds))  # fmt: skip
            rows = [MailRow.from_row(row) for row in await cur.fetchall()]
        async with anyio.create_task_group() as tg:
            for row in rows:
                tg.start_soon(self.deliver, row)
        return len(rows)

    async def deliver(self, row: MailRow) -> str:
        """Send one claimed row and record the attempt; returns the row's new status."""
        error, retryable = await send_mail(self._smtp, compose(row, self._smtp.sender))
        result = await record_outcome(self._pool, "select public.alerts_record(%s, %s, %s, %s) as status",
                                      (row.delivery_id, row.attempt, error, retryable),
                                      within=self._lease_seconds - self._smtp.timeout)  # fmt: skip
        status = str(result["status"]) if result else "unknown"
        if error is not None:
            _logger.warning("alert e-mail to %s (attempt %s): %s → %s", row.email, row.attempt, error, status)
        return status
