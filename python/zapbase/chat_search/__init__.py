"""Chat search ("Chat Inteligente"): a member's question answered by SQL the LLM writes.

checker  the SQL checker (pure): one read-only SELECT over the allowed views, outer LIMIT capped
views    the views the LLM may query and their descriptions, read from the catalogue
service  one search end to end: LLM ─► checker ─► run as the member ─► LLM analysis ─► stored
"""
