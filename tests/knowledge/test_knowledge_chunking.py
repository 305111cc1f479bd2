"""Chunking: heading paths, bounded size, whole-word overlap, dedup, determinism."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from zapbase.knowledge import Block, Chunk, ChunkingOptions, chunk_blocks, chunk_document, parse_file

KNOWLEDGE = Path(__file__).parents[2] / "seed" / "knowledge"
OPTIONS = ChunkingOptions()  # 800 characters, 15 % overlap

_WORDS = (
    "prazo", "entrega", "pedido", "confirmação", "pagamento", "transportadora", "Correios", "rastreio",
    "capital", "interior", "boleto", "cartão", "parcelamento", "devolução", "troca", "etiqueta",
    "embalagem", "reembolso", "garantia", "defeito",
)  # fmt: skip


def _sentence(n: int) -> str:
    words = [_WORDS[(n * 7 + i * 3) % len(_WORDS)] for i in range(6 + n % 9)]
    return f"Regra {n}: o {' '.join(words)} segue a política da Loja Demo."


def _heading(text: str, level: int) -> Block:
    return Block(kind="heading", text=text, level=level)


def _text(text: str) -> Block:
    return Block(kind="text", text=text)


def _long_section() -> list[Block]:
    paragraphs = [" ".join(_sentence(p * 5 + s) for s in range(5)) for p in range(8)]
    return [_heading("Entrega", 1), _heading("Prazos", 2), *(_text(p) for p in paragraphs)]


def _overlap(previous: str, following: str) -> int:
    """Length of the longest suffix of `previous` that starts `following`."""
    return max(
        (k for k in range(1, min(len(previous), len(following))) if previous.endswith(following[:k])),
        default=0,
    )


def test_chunk_seed_knowledge_carries_heading_paths() -> None:
    chunks = chunk_document(parse_file(KNOWLEDGE / "entrega-e-prazos.md"))

    paths = [c.heading_path for c in chunks]
    assert ("Entrega",) in paths
    assert ("Entrega", "Prazos") in paths
    assert ("Entrega", "Retirada na loja") in paths
    prazos = next(c for c in chunks if c.heading_path == ("Entrega", "Prazos"))
    assert "Capital e Grande São Paulo | 1 a 2 dias úteis" in prazos.text
    assert prazos.embedding_text.startswith("Entrega > Prazos\n\n")
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_chunk_every_seed_file_within_target() -> None:
    for path in sorted(KNOWLEDGE.glob("*.md")):
        chunks = chunk_document(parse_file(path))
        assert chunks, path
        assert all(0 < len(c.text) <= OPTIONS.target_chars for c in chunks), path


def test_chunk_heading_path_pops_to_parent_level() -> None:
    blocks = [
        _heading("Loja", 1),
        _heading("Entrega", 2),
        _heading("Prazos", 3),
        _text("Três dias."),
        _heading("Pagamento", 2),
        _text("PIX."),
    ]

    assert [c.heading_path for c in chunk_blocks(blocks)] == [
        ("Loja", "Entrega", "Prazos"),
        ("Loja", "Pagamento"),
    ]


def test_chunk_long_section_overlaps_by_whole_words() -> None:
    blocks = _long_section()
    source_words = {w for b in blocks for w in b.text.split()}

    chunks = chunk_blocks(blocks)

    assert len(chunks) >= 3
    assert all(c.heading_path == ("Entrega", "Prazos") for c in chunks)
    for chunk in chunks:
        assert len(chunk.text) <= OPTIONS.target_chars
        assert set(chunk.text.split()) <= source_words  # no word was cut
    for previous, following in itertools.pairwise(chunks):
        shared = _overlap(previous.text, following.text)
        assert 0.10 * OPTIONS.target_chars <= shared <= 0.20 * OPTIONS.target_chars
        assert following.text[:shared].split()[0] in source_words


def test_chunk_prefers_paragraph_boundaries() -> None:
    paragraphs = [" ".join(_sentence(p * 3 + s) for s in range(3)) for p in range(6)]
    chunks = chunk_blocks([_heading("Trocas", 1), *(_text(p) for p in paragraphs)])

    for chunk in chunks:
        # Each chunk ends exactly where a paragraph ends.
        assert any(chunk.text.endswith(p) for p in paragraphs)


def test_chunk_never_cuts_a_word_longer_than_the_target() -> None:
    giant = "x" * 1000
    chunks = chunk_blocks([_text(f"início {giant} fim")])

    assert giant in [w for c in chunks for w in c.text.split()]


def test_chunk_drops_exact_repeats_under_the_same_heading() -> None:
    notice = "Dúvidas? Fale com a gente pelo WhatsApp."
    blocks = [
        _heading("FAQ", 1),
        _text(notice),
        _heading("FAQ", 1),
        _text(notice),
        _heading("Contato", 1),
        _text(notice),
    ]

    chunks = chunk_blocks(blocks)

    assert [(c.heading_path, c.position) for c in chunks] == [(("FAQ",), 0), (("Contato",), 1)]


def test_chunk_hash_covers_heading_path_and_text() -> None:
    chunk = chunk_blocks([_heading("Pagamento", 1), _text("PIX com 5% de desconto.")])[0]

    expected = hashlib.sha256(b"Pagamento\n\nPIX com 5% de desconto.").hexdigest()
    assert chunk.sha256 == expected


def test_chunk_is_deterministic() -> None:
    first: list[Chunk] = chunk_blocks(_long_section())
    second: list[Chunk] = chunk_blocks(_long_section())

    assert first == second


def test_chunking_options_reject_out_of_range_overlap() -> None:
    with pytest.raises(ValueError, match="overlap_ratio"):
        ChunkingOptions(overlap_ratio=0.5)
    with pytest.raises(ValueError, match="target_chars"):
        ChunkingOptions(target_chars=50)
