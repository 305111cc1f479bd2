"""Whose keys a tenant's AI calls use: its own (an active `llm` integration whose secret is
in Vault: Anthropic, OpenAI, or any OpenAI-compatible provider at its base URL) or the
platform's from settings. Budgets, usage and cache are the same ledger either way; only the
provider clients differ.

    gateways = Gateways(platform=gateway, ledger=ledger, providers_for=build_with_keys)
    gateway = await gateways.for_tenant(conn, tenant_id)
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from zapbase.ai.chain import Gateway, Ledger
from zapbase.ai.types import Provider
from zapbase.db.pool import Connection

__all__ = ["Gateways"]

_CREDENTIALS = "select public.ai_tenant_credentials(%s) as keys"


class Gateways:
    """The platform gateway, or one per tenant that brought its own provider keys.

    Parameters:
        platform: the gateway on the platform's keys.
        ledger: shared by every tenant gateway.
        providers_for: provider clients for a tenant's providers as
            `public.ai_tenant_credentials` gives them ({"groq": {"secret": .., "base_url":
            ..}}); None: tenants' keys are ignored and everyone uses the platform's.
    """

    def __init__(
        self,
        *,
        platform: Gateway,
        ledger: Ledger,
        providers_for: Callable[[Mapping[str, Mapping[str, Any]]], dict[str, Provider]] | None = None,
    ) -> None:
        self.platform = platform
        self._ledger = ledger
        self._providers_for = providers_for
        # tenant → (fingerprint of its keys, its gateway, the clients to close)
        self._tenants: dict[uuid.UUID, tuple[str, Gateway, list[Provider]]] = {}

    async def for_tenant(self, conn: Connection, tenant_id: uuid.UUID) -> Gateway:
        if self._providers_for is None:
            return self.platform
        row = await (await conn.execute(_CREDENTIALS, (tenant_id,))).fetchone()
        keys: Mapping[str, Mapping[str, Any]] = (row or {}).get("keys") or {}
        if not keys:
            return self.platform
        # a rotated key or a moved base URL makes a new gateway; keys never sit in memory
        # under their own name
        fingerprint = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()
        cached = self._tenants.get(tenant_id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        if cached is not None:
            await _close(cached[2])
        providers = self._providers_for(keys)
        gateway = Gateway(providers, self._ledger)
        self._tenants[tenant_id] = (fingerprint, gateway, list(providers.values()))
        return gateway

    async def aclose(self) -> None:
        for _, _, providers in self._tenants.values():
            await _close(providers)
        self._tenants.clear()


async def _close(providers: list[Provider]) -> None:
    for provider in providers:
        await provider.aclose()
