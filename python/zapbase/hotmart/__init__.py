"""Hotmart (seed 003: customer success for course sellers): the webhook route (postback v2)
that authenticates a tenant's hottok and hands each event to SQL (`hotmart_ingest`)."""

from zapbase.hotmart.webhook import HOTMART_PATH, HOTTOK_HEADER, Hottoks, hotmart_path, hotmart_router

__all__ = ["HOTMART_PATH", "HOTTOK_HEADER", "Hottoks", "hotmart_path", "hotmart_router"]
