"""Helpers of the knowledge tests: a tiny deterministic embedder, a Portuguese corpus
with known answers, and a loader that ingests it the way the worker does (through the
knowledge_* functions, as the service role)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from support import Db

DIMS = 384
MODEL = "hash-test-384"
TENANT_A = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
OWNER_A = "00000000-0000-4000-a000-000000000001"  # seed: Ana, owner
AGENT_A = "00000000-0000-4000-a000-000000000002"  # seed: Bruno, agent

_STOP = frozenset((
    "a", "o", "as", "os", "de", "da", "do", "das", "dos", "e", "em", "no", "na", "nos", "nas", "um",
    "uma", "para", "por", "com", "sem", "que", "se", "qual", "como", "meu", "minha", "seu", "sua",
    "voces", "voce", "eu", "ao", "aos", "ou", "mais", "muito", "ja", "nao"))


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def embed(text: str) -> list[float]:
    """Feature hashing of accent-folded words, cut to 5 letters (a poor man's stemmer:
    'parcelas' and 'parcelamento' share a feature), signed, L2-normalised."""
    vector = [0.0] * DIMS
    for word in re.findall(r"[a-z0-9]+", fold(text)):
        if word in _STOP or len(word) < 2:
            continue
        digest = hashlib.sha256(word[:5].encode()).digest()
        index = int.from_bytes(digest[:4], "big") % DIMS
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def vector_literal(values: Sequence[float]) -> str:
    return "[" + ",".join(f"{v:.6f}" for v in values) + "]"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Doc:
    title: str
    heading_path: tuple[str, ...]
    content: str


# Loja Demo's help centre: one chunk per answer.
CORPUS: tuple[Doc, ...] = (
    Doc("Horário de funcionamento", ("Atendimento", "Horário de funcionamento"),
        "Nosso horário de funcionamento é de segunda a sexta, das 9h às 18h, e aos sábados das 9h às 13h."
        " Não abrimos aos domingos e feriados."),
    Doc("Prazos de entrega", ("Entregas", "Prazos"),
        "Entregamos em todo o Brasil. O prazo de entrega é de 3 a 7 dias úteis para as capitais e de até"
        " 12 dias úteis para o interior. Frete grátis em compras acima de R$ 199."),
    Doc("Rastreamento", ("Entregas", "Rastreamento do pedido"),
        "Assim que o pedido é despachado, enviamos o código de rastreamento por WhatsApp e e-mail."
        " Acompanhe a entrega pelo site dos Correios."),
    Doc("Trocas e devoluções", ("Políticas", "Trocas e devoluções"),
        "Você pode pedir a troca ou a devolução em até 7 dias após o recebimento, como garante o Código de"
        " Defesa do Consumidor. O produto deve estar sem uso e na embalagem original."),
    Doc("Reembolso", ("Políticas", "Reembolso"),
        "Depois que recebemos a devolução, o reembolso é feito em até 10 dias úteis no mesmo meio de"
        " pagamento da compra. No cartão de crédito o estorno aparece em até duas faturas."),
    Doc("PIX", ("Pagamentos", "PIX"),
        "Aceitamos pagamento via PIX com 5% de desconto. O QR Code vale por 30 minutos e a confirmação"
        " do pagamento é imediata."),
    Doc("Boleto", ("Pagamentos", "Boleto bancário"),
        "O boleto bancário vence em 3 dias úteis. A compensação leva até 2 dias úteis depois do"
        " pagamento e só então o pedido é separado."),
    Doc("Cartão de crédito", ("Pagamentos", "Cartão de crédito"),
        "Parcelamos em até 12 vezes sem juros no cartão de crédito: Visa, Mastercard, Elo e American"
        " Express. A parcela mínima é de R$ 30."),
    Doc("Cadastro", ("Minha conta", "Dados de cadastro"),
        "Para alterar o endereço de entrega ou os dados do cadastro, acesse Minha Conta no site ou fale"
        " com um de nossos atendentes."),
    Doc("Garantia", ("Políticas", "Garantia"),
        "Todos os produtos têm garantia de 90 dias contra defeitos de fabricação. Para acionar a"
        " garantia, envie fotos do defeito e o número do pedido."),
    Doc("Cancelamento", ("Pedidos", "Cancelamento"),
        "Pedidos podem ser cancelados sem custo até o despacho. Depois do envio, recuse a entrega ou"
        " solicite a devolução."),
    Doc("Loja física", ("Atendimento", "Loja física"),
        "Nossa loja física fica na Rua Augusta, 1500, em São Paulo. A retirada na loja é gratuita e fica"
        " disponível 2 horas após a confirmação do pagamento."),
)


def ingest(db: Db, tenant_id: str, docs: Sequence[Doc], *, bot_id: str | None = None,
           model: str | None = MODEL, embed_fn: Any = embed) -> dict[str, str]:
    """Ingest each doc as a source of one chunk, like the worker: upsert, insert chunks
    (with embeddings when `model`), mark ready. Returns title -> chunk id."""
    ids: dict[str, str] = {}
    with db.as_service() as s:
        for doc in docs:
            text = "\n".join((*doc.heading_path, doc.content))
            source = s.one(
                "select * from public.knowledge_upsert_source(tenant_id => %s, content_hash => %s,"
                " title => %s, kind => 'file', origin => %s, bot_id => %s, embedding_model => %s)",
                (tenant_id, sha256(text), doc.title, f"kb/{doc.title}.md", bot_id, model))
            chunk: dict[str, Any] = {"position": 0, "heading_path": list(doc.heading_path),
                                     "content": doc.content, "token_count": len(doc.content) // 4}
            if model:
                chunk["embedding"] = embed_fn(" ".join((*doc.heading_path, doc.content)))
            s.value("select public.knowledge_insert_chunks(%s, %s, %s)",
                    (tenant_id, source["source_id"], json.dumps([chunk])))
            s.one("select * from public.knowledge_mark_ready(%s, %s)", (tenant_id, source["source_id"]))
            ids[doc.title] = str(s.value(
                "select id from public.document_chunks where source_id = %s", (source["source_id"],)))
    return ids


def create_bot(db: Db, tenant_id: str = TENANT_A, name: str | None = None) -> str:
    """A bot of the tenant (inactive: outside the plan's cap), as a manager would add it."""
    bot_id: uuid.UUID = db.value(
        "insert into public.bots (tenant_id, name, is_active) values (%s, %s, false) returning id",
        (tenant_id, name or f"Bot {uuid.uuid4().hex[:6]}"))
    return str(bot_id)


def new_tenant(db: Db, name: str = "Outra Loja") -> tuple[str, uuid.UUID]:
    owner = db.create_user(f"dono-{uuid.uuid4().hex[:6]}@example.com")
    return str(db.create_tenant(owner, name)), owner


SEARCH = (
    "select * from public.match_knowledge(query_text => %(q)s,"
    " query_embedding => %(e)s::extensions.vector, match_count => %(n)s,"
    " embedding_model => %(m)s, bot_id => %(bot)s, tenant_id => %(t)s,"
    " full_text_weight => %(ftw)s, semantic_weight => %(sw)s)"
)


def search_params(query: str, *, tenant_id: str | None = TENANT_A, semantic: bool = True, n: int = 5,
                  model: str | None = MODEL, bot_id: str | None = None, ftw: float = 1.0,
                  sw: float = 1.0) -> dict[str, Any]:
    return {"q": query, "e": vector_literal(embed(query)) if semantic else None, "n": n,
            "m": model if semantic else None, "bot": bot_id, "t": tenant_id, "ftw": ftw, "sw": sw}
