"""Parsers: every format lands as heading and text blocks, headings with their level."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from zapbase.knowledge import Block, DocumentError, media_type_for, parse_bytes, parse_file

FIXTURES = Path(__file__).parent / "fixtures"
MakePdf = Callable[..., bytes]  # the `make_pdf` fixture of conftest.py


def _headings(blocks: tuple[Block, ...]) -> list[tuple[int, str]]:
    return [(b.level, b.text) for b in blocks if b.kind == "heading"]


def test_parse_markdown_keeps_heading_levels_lists_tables_and_links() -> None:
    doc = parse_file(FIXTURES / "loja.md")

    assert doc.media_type == "text/markdown"
    assert doc.title == "Loja Demo"
    assert _headings(doc.blocks) == [(1, "Loja Demo"), (2, "Entrega"), (3, "Prazos"), (2, "Pagamento")]
    texts = [b.text for b in doc.blocks if b.kind == "text"]
    assert "Veja também o site (https://lojademo.com.br/ajuda)." in texts[0]
    assert "**" not in texts[0]
    assert "- Capitais: 1 a 4 dias úteis.\n- Interior: 6 a 12 dias úteis." in texts
    assert "Região | Prazo\nSudeste | 2 a 4 dias\nNorte | 6 a 12 dias" in texts
    assert "1. PIX com 5% de desconto.\n2. Cartão em até 10x sem juros." in texts
    assert "Chave PIX: contato@lojademo.com.br" in texts


def test_render_parsed_document_as_markdown_text() -> None:
    doc = parse_file(FIXTURES / "loja.md")

    assert doc.text.startswith("# Loja Demo\n\nBem-vindo")
    assert "\n\n### Prazos\n\nO prazo começa" in doc.text


def test_parse_plain_text_reads_setext_headings_and_paragraphs() -> None:
    doc = parse_file(FIXTURES / "loja.txt")

    assert doc.title == "Trocas e devoluções"
    assert _headings(doc.blocks) == [(1, "Trocas e devoluções"), (2, "Produto com defeito")]
    assert [b.text for b in doc.blocks if b.kind == "text"] == [
        "Você tem até 7 dias corridos para desistir da compra.\nO frete de devolução é por nossa conta.",
        "Envie fotos do defeito pelo WhatsApp.",
        "Reembolso em até 5 dias úteis.",
    ]


def test_parse_plain_text_falls_back_to_cp1252() -> None:
    doc = parse_file(FIXTURES / "cp1252.txt")

    assert _headings(doc.blocks) == [(1, "Horário")]
    assert doc.blocks[1].text == "Atendimento das 9h às 18h."


def test_parse_html_drops_scripts_navigation_and_comments() -> None:
    pytest.importorskip("bs4")
    doc = parse_file(FIXTURES / "loja.html")

    assert doc.title == "Ajuda — Loja Demo"
    assert _headings(doc.blocks) == [
        (1, "Central de ajuda"),
        (2, "Horário de funcionamento"),
        (2, "Pagamento"),
    ]
    texts = [b.text for b in doc.blocks if b.kind == "text"]
    assert texts == [
        "Atendemos de segunda a sexta, das 9h às 18h.\nSábado: das 9h às 13h.",
        "Domingos e feriados: sem atendimento humano.",
        "- PIX com 5% de desconto\n- Cartão em até 10x sem juros",
        "Forma | Compensação\nPIX | minutos\nBoleto | até 2 dias úteis",
    ]
    assert "analytics" not in doc.text and "Início" not in doc.text and "comentário" not in doc.text


def test_parse_pdf_ranks_headings_by_font_size(make_pdf: MakePdf) -> None:
    pytest.importorskip("pypdf")
    data = make_pdf(
        [
            [
                (18, "Política de entrega"),
                (11, "Entregamos em todo o Brasil pelos Correios e"),
                (11, "transportadoras parceiras."),
                (11, ""),
                (11, "O prazo começa após a confirmação."),
                (14, "Prazos"),
                (11, "Capitais: 3 a 5 dias úteis."),
                (11, "1"),
            ],
            [(14, "Trocas"), (11, "Até 7 dias corridos.")],
        ],
        title="Loja Demo — Políticas",
    )

    doc = parse_bytes(data, media_type="application/pdf")

    assert doc.title == "Loja Demo — Políticas"
    assert _headings(doc.blocks) == [(1, "Política de entrega"), (2, "Prazos"), (2, "Trocas")]
    assert [b.text for b in doc.blocks if b.kind == "text"] == [
        "Entregamos em todo o Brasil pelos Correios e transportadoras parceiras.",
        "O prazo começa após a confirmação.",
        "Capitais: 3 a 5 dias úteis.",  # the lone "1" is a page number
        "Até 7 dias corridos.",
    ]


def test_parse_pdf_without_metadata_takes_first_heading_as_title(make_pdf: MakePdf) -> None:
    pytest.importorskip("pypdf")
    data = make_pdf([[(16, "Formas de pagamento"), (10, "PIX, cartão e boleto.")]])

    assert parse_bytes(data, media_type="application/pdf").title == "Formas de pagamento"


def test_parse_pdf_rejects_corrupt_file() -> None:
    pytest.importorskip("pypdf")
    with pytest.raises(DocumentError, match="PDF"):
        parse_bytes(b"%PDF-1.4\nthis is not a pdf", media_type="application/pdf")


def test_parse_rejects_document_without_text() -> None:
    with pytest.raises(DocumentError, match="no extractable text"):
        parse_bytes(b"# Only a heading\n", media_type="text/markdown")


def test_media_type_for_rejects_unknown_suffix() -> None:
    assert media_type_for("FAQ.MD") == "text/markdown"
    assert media_type_for("politica.htm") == "text/html"
    with pytest.raises(DocumentError, match="unsupported file type"):
        media_type_for("planilha.xlsx")
