"""Fixtures for the knowledge-base tests: the anyio backend and a tiny PDF writer."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

PdfLine = tuple[int, str]  # (font size in points, text); "" text = an empty line
MakePdf = Callable[..., bytes]


def _pdf_string(text: str) -> bytes:
    out = bytearray()
    for byte in text.encode("cp1252"):  # WinAnsiEncoding, so accents survive
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif byte < 32 or byte > 126:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out)


def write_pdf(pages: Sequence[Sequence[PdfLine]], *, title: str | None = None) -> bytes:
    """A minimal PDF 1.4 with Helvetica text lines laid out top-down, 1.4x leading."""
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    kids = []
    number = 4
    for lines in pages:
        content = bytearray()
        y = 780
        for size, text in lines:
            if text:
                content += b"BT /F1 %d Tf 1 0 0 1 72 %d Tm (%s) Tj ET\n" % (size, y, _pdf_string(text))
            y -= round(size * 1.4)
        objects[number] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (number + 1)
        )
        objects[number + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), bytes(content))
        kids.append(number)
        number += 2
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    trailer = b"/Root 1 0 R"
    if title is not None:
        # Document info strings are PDFDocEncoding or UTF-16BE with a BOM: use the latter.
        utf16 = (b"\xfe\xff" + title.encode("utf-16-be")).hex().encode()
        objects[number] = b"<< /Title <%s> >>" % utf16
        trailer += b" /Info %d 0 R" % number
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (num, objects[num])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for num in sorted(objects):
        out += b"%010d 00000 n \n" % offsets[num]
    out += b"trailer\n<< /Size %d %s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)


@pytest.fixture
def make_pdf() -> MakePdf:
    return write_pdf
