"""Provider clients: Anthropic (official SDK), OpenAI-compatible (httpx), local (offline)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from zapbase.ai.providers.anthropic import AnthropicProvider
from zapbase.ai.providers.local import LOCAL_MODEL, LocalProvider
from zapbase.ai.providers.openai_compat import OpenAICompatProvider
from zapbase.ai.types import Provider

__all__ = [
    "LOCAL_MODEL",
    "AnthropicProvider",
    "LocalProvider",
    "OpenAICompatProvider",
    "build_providers",
    "tenant_providers",
]


def build_providers(
    *,
    anthropic_api_key: str | None = None,
    anthropic_base_url: str | None = None,
    openai_api_key: str | None = None,
    openai_base_url: str = "https://api.openai.com",
    openai_name: str = "openai",
    timeout: float = 30.0,
) -> dict[str, Provider]:
    """Providers by name: a remote one only when its key is configured, local always.

    With no key at all the result is `{"local": ...}`, so every policy degrades to the
    offline answerer instead of failing.
    """
    providers: dict[str, Provider] = {}
    if anthropic_api_key:
        providers["anthropic"] = AnthropicProvider(
            api_key=anthropic_api_key, base_url=anthropic_base_url, timeout=timeout
        )
    if openai_api_key:
        providers[openai_name] = OpenAICompatProvider(
            api_key=openai_api_key, base_url=openai_base_url, name=openai_name, timeout=timeout
        )
    local = LocalProvider()
    providers[local.name] = local
    return providers


def tenant_providers(
    credentials: Mapping[str, Mapping[str, Any]],
    *,
    anthropic_base_url: str | None = None,
    openai_base_url: str = "https://api.openai.com",
    local_mode: bool = False,
    timeout: float = 30.0,
    client: httpx.AsyncClient | None = None,
) -> dict[str, Provider]:
    """Chat providers on a tenant's own keys, as `public.ai_tenant_credentials` returns them
    (`{"groq": {"secret": "gsk_..", "base_url": "https://api.groq.com/openai/v1"}}`).

    "anthropic" speaks Anthropic's protocol at the platform's Anthropic URL; every other
    provider OpenAI's chat completions at its `base_url` (the SDK-style base, ending where
    `/chat/completions` starts), with the address guard on (`local_mode` relaxes it). "openai"
    without a base URL is OpenAI's own API. `client` (tests: an ASGI transport) is shared by
    the OpenAI-compatible ones and closed by the caller.
    """
    providers: dict[str, Provider] = {}
    for name, credential in credentials.items():
        secret, base_url = str(credential["secret"]), credential.get("base_url")
        if name == "anthropic":
            providers[name] = AnthropicProvider(api_key=secret, base_url=anthropic_base_url, timeout=timeout)
        elif base_url:
            providers[name] = OpenAICompatProvider(
                api_key=secret, base_url=str(base_url), api_path="", tenant_url=True, local_mode=local_mode,
                name=name, timeout=timeout, client=client,
            )  # fmt: skip
        elif name == "openai":
            providers[name] = OpenAICompatProvider(
                api_key=secret, base_url=openai_base_url, timeout=timeout, client=client
            )
    return providers
