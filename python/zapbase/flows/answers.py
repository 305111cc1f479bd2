"""What a customer typed, checked against what a question asked for: each check returns the
answer in one canonical form (stored in the flow's variable) or None when it is not one.

    parse_answer("cpf", "529.982.247-25")   == "52998224725"
    parse_answer("date", "3/12/26")          == "2026-12-03"
    parse_answer("yes_no", "Claro!")         == "yes"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from zapbase.text import fold

__all__ = ["KINDS", "NO", "YES", "parse_answer", "parse_number"]

YES = frozenset({"sim", "s", "yes", "y", "claro", "isso", "ok", "pode", "pode ser", "com certeza", "quero",
                 "aceito", "sim por favor", "bora", "positivo", "certo", "1"})
NO = frozenset({"nao", "n", "no", "nao obrigado", "nao obrigada", "agora nao", "negativo", "nem", "2"})

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_DATE_BR = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})$")
_DATE_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_TIME = re.compile(r"^(\d{1,2})\s*(?:[:h]\s*(\d{2})?\s*(?:min)?)?$")
_NUMBER_BR = re.compile(r"^[+-]?\d{1,3}(?:\.\d{3})+(?:,\d+)?$|^[+-]?\d+(?:,\d+)?$")
_NUMBER_DOT = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _check_digit(digits: str, weights: range | list[int]) -> int:
    rest = sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11
    return 0 if rest < 2 else 11 - rest


def _cpf(text: str) -> str | None:
    digits = _digits(text)
    if len(digits) != 11 or len(set(digits)) == 1 or re.search(r"[^\d.\s-]", text.strip()):
        return None
    first = _check_digit(digits[:9], range(10, 1, -1))
    second = _check_digit(digits[:10], range(11, 1, -1))
    return digits if digits[9:] == f"{first}{second}" else None


def _cnpj(text: str) -> str | None:
    digits = _digits(text)
    if len(digits) != 14 or len(set(digits)) == 1 or re.search(r"[^\d./\s-]", text.strip()):
        return None
    weights = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    first = _check_digit(digits[:12], weights)
    second = _check_digit(digits[:13], [6, *weights])
    return digits if digits[12:] == f"{first}{second}" else None


def _phone(text: str) -> str | None:
    if re.search(r"[^\d\s()+.-]", text.strip()):
        return None
    digits = _digits(text)
    if len(digits) in (10, 11):  # Brazilian number without the country code
        digits = "55" + digits
    return digits if 12 <= len(digits) <= 15 and digits[0] != "0" else None


def parse_number(text: str) -> float | None:
    """A number as Brazilians and machines write it: 1.234,56 / 1234,56 / 1234.56."""
    value = text.strip().replace(" ", "")
    if _NUMBER_DOT.match(value):
        return float(value)
    if _NUMBER_BR.match(value):
        return float(value.replace(".", "").replace(",", "."))
    return None


def _number(text: str) -> str | None:
    value = parse_number(text)
    if value is None:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def _date(text: str) -> str | None:
    value = text.strip()
    if found := _DATE_BR.match(value):
        day, month, year = (int(g) for g in found.groups())
        year += 2000 if year < 100 else 0
    elif found := _DATE_ISO.match(value):
        year, month, day = (int(g) for g in found.groups())
    else:
        return None
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _time(text: str) -> str | None:
    found = _TIME.match(text.strip().lower())
    if not found:
        return None
    hour, minute = int(found.group(1)), int(found.group(2) or 0)
    return f"{hour:02d}:{minute:02d}" if hour < 24 and minute < 60 else None


def _email(text: str) -> str | None:
    value = text.strip()
    return value.lower() if len(value) <= 254 and _EMAIL.match(value) else None


def _yes_no(text: str) -> str | None:
    folded = fold(text)
    return "yes" if folded in YES else "no" if folded in NO else None


def _text(text: str) -> str | None:
    return text.strip() or None


KINDS: dict[str, Callable[[str], str | None]] = {
    "text": _text, "number": _number, "email": _email, "phone": _phone, "cpf": _cpf, "cnpj": _cnpj,
    "date": _date, "time": _time, "yes_no": _yes_no,
}  # fmt: skip


def parse_answer(kind: str, text: str | None) -> str | None:
    """The canonical answer, or None (no text at all - a sticker, a photo - is no answer)."""
    if text is None or len(text) > 4096:
        return None
    return KINDS[kind](text)
