"""Typed answers and WhatsApp rendering, as pure functions (no database)."""

from __future__ import annotations

import pytest

from zapbase.flows.answers import parse_answer
from zapbase.flows.blocks import chosen_option
from zapbase.flows.render import Option, choice_message, cut, fill


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("cpf", "529.982.247-25", "52998224725"), ("cpf", "52998224726", None), ("cpf", "111.111.111-11", None),
    ("cpf", "CPF 529.982.247-25", None), ("cnpj", "11.222.333/0001-81", "11222333000181"),
    ("cnpj", "11.222.333/0001-80", None), ("email", " Ana@Loja.COM.br ", "ana@loja.com.br"),
    ("email", "ana@loja", None), ("phone", "(11) 98888-7777", "5511988887777"), ("phone", "+55 11 3333-4444",
    "551133334444"), ("phone", "ligue 1234", None), ("date", "29/02/2028", "2028-02-29"),
    ("date", "29/02/2027", None), ("date", "2026-12-03", "2026-12-03"), ("time", "9h", "09:00"),
    ("time", "23:59", "23:59"), ("time", "24:00", None), ("number", "1.234,56", "1234.56"),
    ("number", "42", "42"),
    ("number", "1,2,3", None), ("yes_no", "Sim!", "yes"), ("yes_no", "não, obrigado", "no"),
    ("yes_no", "talvez", None), ("text", "   ", None), ("text", None, None),
])  # fmt: skip
def test_typed_answers(kind: str, text: str | None, expected: str | None) -> None:
    assert parse_answer(kind, text) == expected


def test_titles_are_cut_at_word_boundaries() -> None:
    assert cut("Segunda via da nota fiscal", 20) == "Segunda via da nota…"
    assert cut("Supercalifragilisticexpialidocious", 10) == "Supercali…"
    assert cut("Pix", 20) == "Pix"


def test_choice_shapes_follow_whatsapp_limits() -> None:
    three = [Option(str(n), f"Opção {n}") for n in range(3)]
    assert choice_message("?", three)["interactive"]["type"] == "button"
    ten = [Option(str(n), f"Opção {n}") for n in range(10)]
    rows = choice_message("?", ten)["interactive"]["action"]["sections"][0]["rows"]
    assert len(rows) == 10 and all(r["id"] != "__more__" for r in rows)
    # titles cut alike are told apart by their position
    alike = [Option(str(n), "Segunda via do boleto de " + m) for n, m in enumerate(["janeiro", "fevereiro"])]
    titles = [b["reply"]["title"] for b in choice_message("?", alike)["interactive"]["action"]["buttons"]]
    assert len(set(titles)) == 2 and all(len(t) <= 20 for t in titles)


def test_typed_choices_match_id_number_or_folded_label() -> None:
    options = [Option("pix", "Pix"), Option("card", "Cartão de crédito")]
    assert chosen_option(options, None, "2") == options[1]
    assert chosen_option(options, None, "CARTAO DE CREDITO!") == options[1]
    assert chosen_option(options, None, "pix") == options[0]
    assert chosen_option(options, "card", "qualquer coisa") == options[1]
    assert chosen_option(options, None, "3") is None and chosen_option(options, "boleto", None) is None


def test_variables_never_set_read_as_empty() -> None:
    assert fill("Olá {{ nome }}, pedido {{pedido}}", {"nome": "Ana"}) == "Olá Ana, pedido "
