"""Knowledge files (.md, .txt, .html, .pdf) → a flat list of heading and text blocks.

Every format lands in the same shape so the chunker never re-parses: headings keep
their level (h1..h6, Markdown `#`, PDF font size rank), lists and tables become one
block each with one line per item or row, and text is NFC with whitespace collapsed.
The parsers come with the `knowledge` extra (markdown-it-py, beautifulsoup4, pypdf) and are
imported on first use, so the worker, which only embeds queries, installs without them.
"""

from __future__ import annotations

import io
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from zapbase.errors import ZapbaseError

if TYPE_CHECKING:
    from bs4.element import Tag
    from markdown_it.token import Token
    from pypdf import PageObject

__all__ = [
    "MEDIA_TYPES",
    "Block",
    "DocumentError",
    "ParsedDocument",
    "media_type_for",
    "parse_bytes",
    "parse_file",
]

MEDIA_TYPES: Mapping[str, str] = MappingProxyType(
    {
        ".md": "text/markdown",
        ".markdown": "text/markdown",
        ".txt": "text/plain",
        ".html": "text/html",
        ".htm": "text/html",
        ".pdf": "application/pdf",
    }
)


class DocumentError(ZapbaseError):
    """A knowledge file could not be read: unsupported, missing parser, or no text."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A heading (`level` 1..6) or a run of body text (`level` 0)."""

    kind: Literal["heading", "text"]
    text: str
    level: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedDocument:
    media_type: str
    title: str | None
    blocks: tuple[Block, ...]

    @property
    def text(self) -> str:
        """The document as Markdown-style text: `## Heading` lines, blank-line paragraphs."""
        return "\n\n".join(
            f"{'#' * b.level} {b.text}" if b.kind == "heading" else b.text for b in self.blocks
        )


def media_type_for(filename: str | Path) -> str:
    suffix = Path(filename).suffix.lower()
    try:
        return MEDIA_TYPES[suffix]
    except KeyError:
        known = ", ".join(sorted(MEDIA_TYPES))
        raise DocumentError(f"{filename}: unsupported file type (use one of {known})") from None


def parse_file(path: Path) -> ParsedDocument:
    return parse_bytes(path.read_bytes(), media_type=media_type_for(path))


def parse_bytes(data: bytes, *, media_type: str) -> ParsedDocument:
    if media_type == "text/markdown":
        title, blocks = _parse_markdown(_decode(data))
    elif media_type == "text/plain":
        title, blocks = _parse_plain(_decode(data))
    elif media_type == "text/html":
        title, blocks = _parse_html(data)
    elif media_type == "application/pdf":
        title, blocks = _parse_pdf(data)
    else:
        raise DocumentError(f"unsupported media type {media_type!r}")
    if not any(b.kind == "text" for b in blocks):
        raise DocumentError(f"no extractable text in this {media_type} document")
    return ParsedDocument(media_type=media_type, title=title, blocks=tuple(blocks))


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Files saved by Windows tools in Brazil are usually cp1252.
        return data.decode("cp1252", errors="replace")


def _clean(text: str) -> str:
    """NFC, every whitespace run (NBSP included) to one space, stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _clean_lines(text: str) -> str:
    lines = (_clean(line) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _first_heading(blocks: list[Block]) -> str | None:
    return next((b.text for b in blocks if b.kind == "heading"), None)


# --- Markdown -------------------------------------------------------------------------


def _parse_markdown(source: str) -> tuple[str | None, list[Block]]:
    try:
        from markdown_it import MarkdownIt
    except ImportError as exc:
        raise DocumentError("Markdown needs markdown-it-py: pip install 'zapbase[knowledge]'") from exc
    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    blocks: list[Block] = []
    lines: list[str] = []  # items of the list or rows of the table being read
    lists: list[list[int]] = []  # per open list: [next number] (or [0] for bullets)
    row: list[str] = []
    heading_level = 0
    for i, tok in enumerate(tokens):
        kind = tok.type
        if kind == "heading_open":
            heading_level = int(tok.tag[1])
        elif kind in ("bullet_list_open", "ordered_list_open"):
            start = tok.attrGet("start")
            ordered = kind == "ordered_list_open"
            lists.append([int(start) if start is not None else 1] if ordered else [0])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
            if not lists:
                blocks.append(Block(kind="text", text="\n".join(lines)))
                lines = []
        elif kind == "tr_close":
            lines.append(" | ".join(row))
            row = []
        elif kind == "table_close":
            blocks.append(Block(kind="text", text="\n".join(lines)))
            lines = []
        elif kind in ("fence", "code_block") and _clean_lines(tok.content):
            blocks.append(Block(kind="text", text=_clean_lines(tok.content)))
        elif kind == "inline":
            text = _inline_text(tok)
            parent = tokens[i - 1].type
            if parent == "heading_open" and text:
                blocks.append(Block(kind="heading", text=text, level=heading_level))
            elif parent in ("th_open", "td_open"):
                row.append(text)
            elif lists and text:
                marker = lists[-1]
                bullet = "-" if marker[0] == 0 else f"{marker[0]}."
                indent = "  " * (len(lists) - 1)
                # A second paragraph inside one item continues that item's line.
                if tokens[i - 2].type == "list_item_open":
                    lines.append(f"{indent}{bullet} {text}")
                    if marker[0]:
                        marker[0] += 1
                elif lines:
                    lines[-1] += f" {text}"
                else:
                    lines.append(text)
            elif text:
                blocks.append(Block(kind="text", text=text))
    return _first_heading([b for b in blocks if b.level == 1]), blocks


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    href: str | None = None
    label_start = 0
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
        elif child.type == "link_open":
            value = child.attrGet("href")
            href = str(value) if value is not None else None
            label_start = len(parts)
        elif child.type == "link_close" and href:
            # Keep web addresses: the bot can only quote a link it was given.
            label = "".join(parts[label_start:]).strip()
            if href.startswith(("http://", "https://", "mailto:")) and href not in label:
                parts.append(f" ({href.removeprefix('mailto:')})")
            href = None
    return _clean("".join(parts))


# --- Plain text -----------------------------------------------------------------------

_UNDERLINE = re.compile(r"^(=+|-+)$")


def _parse_plain(source: str) -> tuple[str | None, list[Block]]:
    blocks: list[Block] = []
    for para in re.split(r"\n\s*\n", source.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [line for line in (_clean(x) for x in para.split("\n")) if line]
        # A setext underline ("Title\n=====") is the one heading convention plain text has.
        if len(lines) >= 2 and len(lines[1]) >= 3 and _UNDERLINE.match(lines[1]):
            level = 1 if lines[1][0] == "=" else 2
            blocks.append(Block(kind="heading", text=lines[0], level=level))
            lines = lines[2:]
        if lines:
            blocks.append(Block(kind="text", text="\n".join(lines)))
    return _first_heading(blocks), blocks


# --- HTML -----------------------------------------------------------------------------

_SKIPPED_TAGS = frozenset(
    {"head", "script", "style", "noscript", "template", "svg", "nav", "iframe", "canvas"}
)
_HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt",
        "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "p",
        "section", "summary",
    }
)  # fmt: skip


def _parse_html(data: bytes) -> tuple[str | None, list[Block]]:
    try:
        from bs4 import BeautifulSoup
    except ImportError as exc:
        raise DocumentError("HTML needs beautifulsoup4: pip install 'zapbase[knowledge]'") from exc
    soup = BeautifulSoup(data, "html.parser")
    title_tag = soup.find("title")
    title = _clean(title_tag.get_text()) if title_tag is not None else ""
    walker = _HtmlWalker()
    walker.walk(soup.body or soup)
    walker.flush()
    h1 = _first_heading([b for b in walker.blocks if b.level == 1])
    return title or h1, walker.blocks


class _HtmlWalker:
    """Depth-first walk that cuts a new block at every block-level element."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._inline: list[str] = []

    def flush(self) -> None:
        text = _clean_lines("".join(self._inline))
        if text:
            self.blocks.append(Block(kind="text", text=text))
        self._inline = []

    def walk(self, node: Tag) -> None:
        from bs4.element import NavigableString, PreformattedString, Tag

        for child in node.children:
            if isinstance(child, NavigableString):
                # PreformattedString covers comments, CDATA, doctype, declarations.
                if not isinstance(child, PreformattedString):
                    self._inline.append(str(child).replace("\n", " "))
                continue
            if not isinstance(child, Tag) or child.name in _SKIPPED_TAGS:
                continue
            name = child.name
            if name == "br":
                self._inline.append("\n")
            elif name in _HEADING_TAGS:
                self.flush()
                text = _clean(child.get_text(" "))
                if text:
                    self.blocks.append(Block(kind="heading", text=text, level=int(name[1])))
            elif name in ("ul", "ol"):
                self.flush()
                self._list(child, ordered=name == "ol")
            elif name == "table":
                self.flush()
                rows = (
                    " | ".join(_clean(c.get_text(" ")) for c in tr.find_all(["th", "td"]))
                    for tr in child.find_all("tr")
                )
                self._add_text("\n".join(r for r in rows if r.strip(" |")))
            elif name == "pre":
                self.flush()
                self._add_text(_clean_lines(child.get_text()))
            elif name in _BLOCK_TAGS:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.walk(child)

    def _list(self, node: Tag, *, ordered: bool) -> None:
        items = [_clean(li.get_text(" ")) for li in node.find_all("li", recursive=False)]
        lines = [
            f"{n}. {text}" if ordered else f"- {text}"
            for n, text in enumerate((t for t in items if t), start=1)
        ]
        self._add_text("\n".join(lines))

    def _add_text(self, text: str) -> None:
        if text:
            self.blocks.append(Block(kind="text", text=text))


# --- PDF ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Line:
    parts: list[str]
    size: float
    y: float
    page: int

    @property
    def text(self) -> str:
        return _clean("".join(self.parts))


def _parse_pdf(data: bytes) -> tuple[str | None, list[Block]]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as exc:
        raise DocumentError("PDF needs pypdf: pip install 'zapbase[knowledge]'") from exc
    try:
        reader = PdfReader(io.BytesIO(data))
        lines: list[_Line] = []
        for number, page in enumerate(reader.pages):
            lines.extend(_pdf_lines(page, number))
        meta_title = reader.metadata.title if reader.metadata else None
    except PdfReadError as exc:
        raise DocumentError(f"unreadable PDF: {exc}") from exc
    blocks = _pdf_blocks([line for line in lines if line.text])
    title = _clean(meta_title) if meta_title else _first_heading(blocks)
    return title or None, blocks


def _pdf_lines(page: PageObject, number: int) -> list[_Line]:
    """Lines of one page with their effective font size and baseline, via pypdf's visitor."""
    lines: list[_Line] = []

    def visit(text: str, cm: list[float], tm: list[float], _font: Any, size: float) -> None:
        for n, piece in enumerate(text.split("\n")):
            if n > 0 and lines and lines[-1].parts:
                lines.append(_Line([], 0.0, lines[-1].y, number))
            if not piece.strip():
                continue
            # Effective size: font size scaled by the text and graphics matrices.
            eff = abs(size) * math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3])
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            last = lines[-1] if lines else None
            if last is None or (last.parts and abs(last.y - y) > max(eff, last.size) * 0.5):
                last = _Line([], 0.0, y, number)
                lines.append(last)
            if not last.parts:
                last.y = y
            last.parts.append(piece)
            last.size = max(last.size, round(eff, 1))

    page.extract_text(visitor_text=visit)
    return lines


def _pdf_blocks(lines: list[_Line]) -> list[Block]:
    if not lines:
        return []
    weights: Counter[float] = Counter()
    for line in lines:
        weights[line.size] += len(line.text)
    body = weights.most_common(1)[0][0]
    # Lines set clearly larger than the body text are headings, ranked by size.
    heading_sizes = sorted({ln.size for ln in lines if _is_heading(ln, body)}, reverse=True)
    levels = {size: min(rank, 6) for rank, size in enumerate(heading_sizes, start=1)}
    blocks: list[Block] = []
    para: list[str] = []
    prev: _Line | None = None

    def flush() -> None:
        if para:
            blocks.append(Block(kind="text", text=_join_pdf_lines(para)))
            para.clear()

    for line in lines:
        same_page = prev is not None and prev.page == line.page
        if _is_heading(line, body):
            flush()
            level = levels[line.size]
            # A heading that wraps onto a second line stays one heading.
            wrapped = same_page and prev is not None and prev.y - line.y <= line.size * 1.6
            if wrapped and prev is not None and _is_heading(prev, body) and levels[prev.size] == level:
                blocks[-1] = Block(kind="heading", text=f"{blocks[-1].text} {line.text}", level=level)
            else:
                blocks.append(Block(kind="heading", text=line.text, level=level))
        elif not line.text.isdigit():  # a line of digits alone is a page number
            gap = prev.y - line.y if same_page and prev is not None else math.inf
            if gap > line.size * 1.6 or gap < 0:
                flush()
            para.append(line.text)
        prev = line
    flush()
    return blocks


def _is_heading(line: _Line, body: float) -> bool:
    return line.size >= body * 1.15 and len(line.text) <= 150 and any(c.isalpha() for c in line.text)


def _join_pdf_lines(lines: list[str]) -> str:
    out = lines[0]
    for line in lines[1:]:
        # A line ending in a hyphen was broken inside a word ("guarda-" / "chuva").
        out = out + line if out.endswith("-") else f"{out} {line}"
    return out
