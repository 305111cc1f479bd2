"""Provider clients: Anthropic (official SDK), OpenAI-compatible (httpx), local (offline)."""

from __future__ import annotations

from zapbase.ai.providers.anthropic import AnthropicProvider
from zapbase.ai.providers.local import LOCAL_MODEL, LocalProvider
from zapbase.ai.providers.openai_compat import OpenAICompatProvider
from zapbase.ai.types import Provider

__all__ = ["LOCAL_MODEL", "AnthropicProvider", "LocalProvider", "OpenAICompatProvider", "build_providers"]


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
