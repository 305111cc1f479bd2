"""Zapbase: multi-tenant WhatsApp backend with AI, built the Supabase way."""

__version__ = "0.1.0"
