"""Heading-aware chunking with overlap.

A document is cut into sections at its headings; each section is packed into chunks of
at most `target_chars`, preferring paragraph boundaries, then lines, then sentences,
then words, and never cutting inside a word. Consecutive chunks of one section share
an overlap of whole words (10–20 % of the target) so an answer that straddles a cut is
still found; sections never overlap each other, since their heading paths differ.

Each chunk carries its heading path (e.g. ``("Entrega", "Prazos")``) and a sha256 of
`embedding_text` (path + text): re-ingesting an unchanged file yields the same hashes,
so the database can skip re-embedding, and exact repeats inside one document are dropped.
Everything here is pure and deterministic.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from zapbase.knowledge.parsers import Block, ParsedDocument

__all__ = ["DEFAULT_CHUNKING", "Chunk", "ChunkingOptions", "chunk_blocks", "chunk_document", "embedding_text"]

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkingOptions:
    target_chars: int = 800
    overlap_ratio: float = 0.15

    def __post_init__(self) -> None:
        if self.target_chars < 200:
            raise ValueError("target_chars must be at least 200")
        if not 0.10 <= self.overlap_ratio <= 0.20:
            raise ValueError("overlap_ratio must be between 0.10 and 0.20")

    @property
    def overlap_chars(self) -> int:
        return int(self.target_chars * self.overlap_ratio)

    @property
    def min_overlap_chars(self) -> int:
        return self.target_chars // 10


DEFAULT_CHUNKING = ChunkingOptions()


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    position: int
    heading_path: tuple[str, ...]
    text: str
    sha256: str

    @property
    def embedding_text(self) -> str:
        """What gets embedded: the heading path gives a short chunk its context."""
        return embedding_text(self.heading_path, self.text)


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    joiner: str  # put between this unit and the one before it in the same chunk


def chunk_document(document: ParsedDocument, options: ChunkingOptions = DEFAULT_CHUNKING) -> list[Chunk]:
    return chunk_blocks(document.blocks, options)


def chunk_blocks(blocks: Sequence[Block], options: ChunkingOptions = DEFAULT_CHUNKING) -> list[Chunk]:
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for path, texts in _sections(blocks):
        for text in _pack(_units(texts, options), options):
            digest = hashlib.sha256(embedding_text(path, text).encode()).hexdigest()
            if digest in seen:
                continue  # boilerplate repeated under the same heading
            seen.add(digest)
            chunks.append(Chunk(position=len(chunks), heading_path=path, text=text, sha256=digest))
    return chunks


def embedding_text(path: Sequence[str], text: str) -> str:
    """Heading path and text as one string: what is embedded (and hashed) for a chunk."""
    return f"{' > '.join(path)}\n\n{text}" if path else text


def _sections(blocks: Iterable[Block]) -> Iterator[tuple[tuple[str, ...], list[str]]]:
    """(heading path, body texts) for every run of text blocks under one heading."""
    stack: list[tuple[int, str]] = []
    texts: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            if texts:
                yield tuple(title for _, title in stack), texts
                texts = []
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            stack.append((block.level, block.text))
        elif block.text:
            texts.append(block.text)
    if texts:
        yield tuple(title for _, title in stack), texts


def _units(texts: Iterable[str], options: ChunkingOptions) -> list[_Unit]:
    """Split blocks into pieces small enough to leave room for an overlap in any chunk."""
    # 2 = the longest joiner ("\n\n") that can sit between the overlap and a piece.
    limit = options.target_chars - options.overlap_chars - 2
    units: list[_Unit] = []
    for text in texts:
        for n, piece in enumerate(_split(text, limit)):
            units.append(_Unit(piece.text, "\n\n" if n == 0 else piece.joiner))
    return units


def _split(text: str, limit: int, level: int = 0) -> list[_Unit]:
    """The coarsest pieces that fit in `limit`: lines (level 0), sentences (1), words (2)."""
    if len(text) <= limit:
        return [_Unit(text, "")]
    if level == 2:
        return _word_windows(text, limit)
    parts = text.split("\n") if level == 0 else _SENTENCE_END.split(text)
    if len(parts) == 1:
        return _split(text, limit, level + 1)
    joiner = "\n" if level == 0 else " "
    pieces: list[_Unit] = []
    for part in parts:
        for n, sub in enumerate(_split(part, limit, level + 1)):
            pieces.append(_Unit(sub.text, joiner if n == 0 else sub.joiner))
    return _merge(pieces, limit)


def _merge(pieces: list[_Unit], limit: int) -> list[_Unit]:
    """Glue neighbouring pieces back into about equal groups, none over `limit`:
    a 740-character paragraph becomes 2 × 370, not 670 + 70."""
    total = sum(len(p.joiner) + len(p.text) for p in pieces)
    groups = math.ceil(total / limit)
    merged: list[_Unit] = []
    group = -1
    end = 0
    for piece in pieces:
        start = end + len(piece.joiner)
        end = start + len(piece.text)
        # A piece belongs to the group its middle falls in.
        target = min(int((start + end) / 2 / total * groups), groups - 1)
        size = len(merged[-1].text) + len(piece.joiner) + len(piece.text) if merged else 0
        if merged and target == group and size <= limit:
            merged[-1] = _Unit(merged[-1].text + piece.joiner + piece.text, merged[-1].joiner)
        else:
            merged.append(piece)
            group = target
    return merged


def _word_windows(text: str, limit: int) -> list[_Unit]:
    # A single word longer than `limit` becomes a window of its own: words are never cut.
    windows: list[_Unit] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > limit:
            windows.append(_Unit(current, " "))
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        windows.append(_Unit(current, " "))
    return windows


def _pack(units: list[_Unit], options: ChunkingOptions) -> list[str]:
    """Greedy packing; a new chunk starts with the tail of the one just closed."""
    chunks: list[str] = []
    body = ""
    for unit in units:
        candidate = body + unit.joiner + unit.text if body else unit.text
        if body and len(candidate) > options.target_chars:
            chunks.append(body)
            overlap = _tail(body, options)
            candidate = overlap + unit.joiner + unit.text if overlap else unit.text
        body = candidate
    if body:
        chunks.append(body)
    return chunks


def _tail(text: str, options: ChunkingOptions) -> str:
    """The overlap: the longest run of whole words at the end of `text` that fits the
    budget, started at a sentence when one begins far enough back."""
    budget, floor = options.overlap_chars, options.min_overlap_chars
    if len(text) <= budget:
        return text
    start = len(text) - budget
    window = text[start:]
    sentence = _SENTENCE_END.search(window)
    if sentence and len(window) - sentence.end() >= floor:
        return window[sentence.end() :]
    # Move to the first word that starts inside the window.
    if not text[start - 1].isspace():
        cut = re.search(r"\s", window)
        window = window[cut.end() :] if cut else ""
    return window.lstrip()
