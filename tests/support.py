"""Test helpers that talk to the database the way Zapbase's clients do.

`Db.as_user` / `as_anon` / `as_service` act exactly like PostgREST: log in as
`authenticator`, open one transaction, `set_config('role', ..., true)` and
`set_config('request.jwt.claims', ..., true)`, run the statements, commit (or roll
back on error). `Db.sql` arranges data as `postgres`, like Supabase's SQL editor.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]


class Session:
    """One PostgREST-like request: every call runs in the same transaction."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn

    def all(self, query: str, params: Any = None) -> list[Row]:
        cur = self._conn.execute(query.encode(), params)
        return cur.fetchall() if cur.description else []

    def one(self, query: str, params: Any = None) -> Row:
        rows = self.all(query, params)
        assert len(rows) == 1, f"expected one row, got {len(rows)}"
        return rows[0]

    def value(self, query: str, params: Any = None) -> Any:
        return next(iter(self.one(query, params).values()))

    def rowcount(self, query: str, params: Any = None) -> int:
        return self._conn.execute(query.encode(), params).rowcount


@dataclass(frozen=True)
class Db:
    """A fresh database cloned from the migrated and seeded template."""

    url: str  # as postgres

    def _url_as(self, user: str) -> str:
        return self.url.replace("postgres:postgres@", f"{user}:{user}@", 1)

    def connect(self, user: str = "postgres") -> psycopg.Connection[Row]:
        return psycopg.connect(self._url_as(user), row_factory=dict_row)

    @contextmanager
    def _request(self, role: str, claims: dict[str, Any] | None) -> Iterator[Session]:
        with self.connect("authenticator") as conn:
            conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                (role, json.dumps(claims or {"role": role})),
            )
            yield Session(conn)  # the connection block commits, or rolls back on error

    def as_user(self, user_id: uuid.UUID | str, **claims: Any) -> Any:
        """A request by a signed-in user (role authenticated) with these JWT claims."""
        email = claims.pop("email", None)
        if email is None:
            with self.connect() as conn:
                row = conn.execute("select email from auth.users where id = %s", (user_id,)).fetchone()
                email = row["email"] if row else None
        base = {"sub": str(user_id), "role": "authenticated", "aud": "authenticated", "email": email}
        return self._request("authenticated", {**base, **claims})

    def as_anon(self) -> Any:
        return self._request("anon", {"role": "anon"})

    def as_service(self) -> Any:
        return self._request("service_role", {"role": "service_role"})

    def sql(self, query: str, params: Any = None) -> list[Row]:
        """Run as postgres (bypasses RLS) and commit: arrange and inspect."""
        with self.connect() as conn:
            cur = conn.execute(query.encode(), params)
            return cur.fetchall() if cur.description else []

    def value(self, query: str, params: Any = None) -> Any:
        rows = self.sql(query, params)
        assert len(rows) == 1, f"expected one row, got {len(rows)}"
        return next(iter(rows[0].values()))

    # -- factories -----------------------------------------------------------------

    def create_user(
        self, email: str | None = None, name: str | None = None, *, confirmed: bool = True
    ) -> uuid.UUID:
        """A signed-up user; `confirmed`: they followed the link of the confirmation e-mail."""
        user_id = uuid.uuid4()
        email = email or f"user-{user_id.hex[:8]}@example.com"
        self.sql(
            "insert into auth.users (id, aud, role, email, email_confirmed_at, raw_user_meta_data)"
            " values (%s, 'authenticated', 'authenticated', %s, case when %s then now() end, %s)",
            (user_id, email, confirmed, json.dumps({"full_name": name or email.split("@")[0]})),
        )
        return user_id

    def create_tenant(self, owner: uuid.UUID, name: str, plan: str = "pro") -> uuid.UUID:
        """A tenant opened by `owner` through the create_tenant RPC (on the free plan), then
        moved to `plan` by billing (the service role), as a subscription does."""
        with self.as_user(owner) as s:
            tenant_id: uuid.UUID = s.value("select id from public.create_tenant(name => %s)", (name,))
        if plan != "free":
            with self.as_service() as s:
                s.all(
                    "update public.tenants set plan_id = (select id from public.plans where code = %s)"
                    " where id = %s",
                    (plan, tenant_id),
                )
        return tenant_id

    def add_member(self, tenant_id: uuid.UUID, role: str, email: str | None = None) -> uuid.UUID:
        user_id = self.create_user(email)
        self.sql(
            "insert into public.members (tenant_id, user_id, role) values (%s, %s, %s)",
            (tenant_id, user_id, role),
        )
        return user_id

    def create_conversation(self, wa_id: str = "5511988887777", text: str = "Oi!") -> tuple[str, str]:
        """A customer message to the demo tenant's number, through whatsapp_ingest:
        (conversation id, message id) as strings."""
        number = "106540352242922"
        payload = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "5511999990000", "phone_number_id": number},
                "messages": [{"from": wa_id, "id": f"wamid.{uuid.uuid4().hex}", "type": "text",
                              "timestamp": str(int(time.time())), "text": {"body": text}}]}}]}]}
        with self.as_service() as s:
            # signed by the demo number's own app, as the simulator signs it
            result = s.value("select public.whatsapp_ingest(%s::jsonb, %s)", (json.dumps(payload), number))
        message_id = result["inbound_message_ids"][0]
        conversation = self.value("select conversation_id from public.messages where id = %s", (message_id,))
        return str(conversation), message_id
