"""The offline provider: pt-BR answers from knowledge passages."""

from __future__ import annotations

import pytest

from zapbase.ai import LocalProvider
from zapbase.ai.providers.local import FOUND_PREFIX, NOT_FOUND_REPLY

from .support import KNOWLEDGE, ask

pytestmark = pytest.mark.anyio


async def test_local_answers_from_the_matching_passage_accent_insensitively() -> None:
    result = await LocalProvider().chat(
        ask("qual o HORARIO de atendimento de voces?", knowledge=KNOWLEDGE), "local-chat"
    )

    assert result.text.startswith(FOUND_PREFIX)
    assert KNOWLEDGE[0] in result.text
    assert KNOWLEDGE[1] not in result.text and KNOWLEDGE[2] not in result.text
    assert (result.provider, result.model, result.stop_reason) == ("local", "local-chat", "end_turn")


async def test_local_picks_the_passage_with_most_shared_words() -> None:
    result = await LocalProvider().chat(
        ask("Posso pagar com cartão de crédito ou Pix?", knowledge=KNOWLEDGE), "local-chat"
    )

    assert KNOWLEDGE[2] in result.text and KNOWLEDGE[0] not in result.text


async def test_local_offers_a_human_when_nothing_matches() -> None:
    result = await LocalProvider().chat(ask("Vocês consertam bicicletas?", knowledge=KNOWLEDGE), "local-chat")

    assert result.text == NOT_FOUND_REPLY
    assert result.text.endswith("Posso chamar um atendente humano para ajudar?")


async def test_local_offers_a_human_without_knowledge() -> None:
    result = await LocalProvider().chat(ask("Qual o horário?"), "local-chat")

    assert result.text == NOT_FOUND_REPLY


async def test_local_is_deterministic_and_estimates_tokens() -> None:
    request = ask("Quanto tempo leva a entrega?", knowledge=KNOWLEDGE)

    first = await LocalProvider().chat(request, "local-chat")
    second = await LocalProvider().chat(request, "local-chat")

    assert first == second
    prompt = len(request.system) + len(request.messages[0].content) + sum(map(len, KNOWLEDGE))
    assert first.usage.input_tokens == prompt // 4
    assert first.usage.output_tokens == len(first.text) // 4
    assert first.usage.cache_read_tokens == first.usage.cache_write_tokens == 0
