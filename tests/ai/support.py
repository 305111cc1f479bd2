"""Shared test data for the AI gateway tests."""

from __future__ import annotations

from dataclasses import dataclass

from zapbase.ai import ChatMessage, ChatRequest, Link

SONNET = Link(provider="anthropic", model="claude-sonnet-4-6", context_window=200_000)
MINI = Link(provider="openai", model="gpt-4o-mini", context_window=128_000)
LONG = Link(provider="openai", model="gpt-4.1", context_window=1_000_000)

KNOWLEDGE = (
    "Nosso horário de atendimento é de segunda a sexta, das 9h às 18h.",
    "A entrega para todo o Brasil leva de 3 a 7 dias úteis.",
    "Aceitamos pagamento via Pix, boleto e cartão de crédito em até 10 vezes.",
)


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest(
        messages=(ChatMessage(role="user", content=text),),
        system="Você é o assistente da Loja Exemplo.",
        **kwargs,  # type: ignore[arg-type]
    )
