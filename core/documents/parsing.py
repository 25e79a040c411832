"""Parsing uploaded files into pages of text: PDF (pymupdf), plain text, Markdown and HTML.

Every check that can reject a file raises InputError naming the file and the reason, so the
Documents stage can skip that file and go on with the others. Nothing here writes to disk.

DOCX is not supported: python-docx is not part of the pinned stack. A .docx upload gets a clear
message asking for a PDF export instead.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from core.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_NAME_CHARS = 120
TEXT_EXTENSIONS = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".rst": "txt"}
HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
SUPPORTED_EXTENSIONS = (".pdf", *TEXT_EXTENSIONS, *sorted(HTML_EXTENSIONS))
PAGE_SEPARATOR = "\n\n"
_LINE_HYPHEN = re.compile(r"(?<=\w)-\n(?=\w)")
_PAGE_NUMBER = re.compile(r"^\s*(?:\d{1,4}|[ivxlcdm]{1,7})\s*$", re.IGNORECASE)
_DOT_LEADER = re.compile(r"(?:\.[ \t]?){4,}")  # ". . . . ." in tables of contents

# Byte order marks of UTF-16/32 text (Windows Notepad's "Unicode"), longest first: UTF-32-LE's
# starts with UTF-16-LE's. Such text is full of NUL bytes, so it is recognised before the binary
# check.
_WIDE_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# Magic numbers of formats people upload by mistake (or under a wrong name).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\x7fELF", "executable"),
    (b"MZ", "Windows executable"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office document (.doc/.xls)"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!", "RAR archive"),
)


@dataclass(frozen=True)
class Page:
    """The text of one page. `number` is 1-based for paged formats, None for the others."""

    number: int | None
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    """A parsed file: its sanitised name, content hash, format, pages and any warnings."""

    source: str
    doc_id: str
    kind: str  # "pdf", "txt", "md", "html"
    pages: tuple[Page, ...]
    size_bytes: int
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_pages(self) -> int:
        return len(self.pages)

    @property
    def n_chars(self) -> int:
        return sum(len(p.text) for p in self.pages)


def doc_id_for(data: bytes) -> str:
    """Deterministic document id from the file's bytes."""
    return "d_" + hashlib.sha256(data).hexdigest()[:16]


def sanitize_filename(name: str) -> str:
    """A safe file name: no folders, no `..`, no control or odd characters, bounded length.

    Keeps letters (any script), digits, spaces and `._-()+,`; everything else becomes `_`.
    """
    name = unicodedata.normalize("NFKC", name or "")
    name = name.replace("\\", "/")
    name = PurePosixPath(name).name  # drop any folder part, including ../
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # control chars
    name = re.sub(r"[^\w .()+,\-]", "_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")  # no leading dots: no hidden files, no '..'
    name = re.sub(r"_{2,}", "_", name)
    if not name or set(name) <= {"_", "."}:
        name = "document"
    stem, ext = os.path.splitext(name)
    if len(ext) > 12:
        stem, ext = name, ""
    if len(name) > MAX_NAME_CHARS:
        name = stem[: MAX_NAME_CHARS - len(ext)].rstrip(" .") + ext
    return name


def format_size(n_bytes: int) -> str:
    """A size for people: "512 bytes", "12.5 KB", "1.5 MB" (1 KB = 1024 bytes, as the size
    limit is set in the Documents page)."""
    if n_bytes < 1024:
        return f"{n_bytes} byte{'s' if n_bytes != 1 else ''}"
    value, unit = (n_bytes / 1024, "KB") if n_bytes < 1024**2 else (n_bytes / 1024**2, "MB")
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _wide_encoding(data: bytes) -> str | None:
    """The encoding ("utf-16" or "utf-32") whose byte order mark starts `data`, if any."""
    return next((enc for bom, enc in _WIDE_BOMS if data.startswith(bom)), None)


def sniff_format(data: bytes) -> str:
    """What the bytes are, by magic number: "pdf", "zip", another binary type, or "text"
    (UTF-16/32 text with a byte order mark included)."""
    head = data[:1024]
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if _wide_encoding(head):
        return "text"
    if b"%PDF-" in head:  # PDFs may have junk before the header; readers accept it
        return "pdf"
    if _looks_binary(head):
        return "binary data"
    return "text"


def _looks_binary(head: bytes) -> bool:
    if not head:
        return False
    if b"\x00" in head:
        # UTF-16 text also has NULs; with a byte order mark it is caught before this check,
        # without one it is rare enough in uploads to treat as binary.
        return True
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return controls / len(head) > 0.1


def _looks_html(text: str) -> bool:
    head = text[:2048].lstrip().lower()
    return head.startswith(("<!doctype html", "<html", "<?xml")) or "<html" in head[:512]


def decode_text(data: bytes, source: str) -> tuple[str, list[str]]:
    """Decode text bytes: UTF-8 (BOM allowed), UTF-16/32 with a BOM (with a warning), else
    cp1252/latin-1 with a warning.

    Raises InputError for binary content.
    """
    warnings: list[str] = []
    wide = _wide_encoding(data)
    if wide:
        return _decode_wide(data, source, wide), [
            f"the text is {wide.upper()}, not UTF-8; it was decoded as {wide.upper()} (save it "
            "as UTF-8 to avoid this warning)"
        ]
    if _looks_binary(data[:4096]):
        raise InputError(
            f"{source}: the file is binary, not text.",
            fix="upload PDF, TXT, MD or HTML files",
        )
    try:
        return data.decode("utf-8-sig"), warnings
    except UnicodeDecodeError as exc:
        position = exc.start
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        warnings.append(
            f"not valid UTF-8 (first bad byte at offset {position}); decoded as {encoding}, "
            "so a few characters may be wrong"
        )
        return text, warnings
    raise InputError(f"{source}: the text is in an unknown encoding.", fix="save it as UTF-8")


def _decode_wide(data: bytes, source: str, encoding: str) -> str:
    """UTF-16/32 text (the BOM picks the byte order), refused when broken or not really text."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{source}: the file starts with a {encoding.upper()} byte order mark but is not "
            f"valid {encoding.upper()}.",
            found=f"bad bytes at offset {exc.start}",
            fix="save it as UTF-8",
        ) from exc
    head = text[:4096]
    odd = {"Cc", "Cn", "Co", "Cs"}  # controls, unassigned, private use, surrogates
    controls = sum(1 for ch in head if unicodedata.category(ch) in odd and ch not in "\t\n\r\f")
    if head and controls / len(head) > 0.1:
        raise InputError(
            f"{source}: the file starts with a {encoding.upper()} byte order mark but its "
            "content is binary, not text.",
            fix="save it as UTF-8, or upload PDF, TXT, MD or HTML files",
        )
    return text


def _reject_kind(source: str, ext: str, kind: str) -> InputError:
    if kind == "zip" and ext in {".docx", ".odt", ".pptx", ".xlsx"}:
        return InputError(
            f"{source}: {ext} files are not supported (python-docx is not installed).",
            fix="export the document as PDF or plain text and upload that",
        )
    named = f"named {ext}" if ext else "has no extension"
    return InputError(
        f"{source}: the file {named} but its content is a {kind}.",
        found=f"magic bytes of a {kind}",
        fix="upload PDF, TXT, MD or HTML files, or fix the extension",
    )


def parse_file(
    filename: str,
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_page: Callable[[int, int], None] | None = None,
) -> ParsedDocument:
    """Parse one uploaded file into pages of text.

    The format comes from the content (magic bytes), checked against the extension. Raises
    InputError (naming the file) for empty, oversized, corrupt, encrypted, scanned, binary or
    unsupported files. `on_page(done, total)` reports PDF pages as they are read.
    """
    source = sanitize_filename(filename)
    warnings: list[str] = []
    if source != filename:
        warnings.append(f"file name {filename!r} was sanitised to {source!r}")
    if not data:
        raise InputError(f"{source}: the file is empty (0 bytes).", fix="upload the real file")
    if len(data) > max_bytes:
        size, limit = format_size(len(data)), format_size(max_bytes)
        if size == limit:  # both round to the same figure: give the exact counts
            size, limit = f"{len(data):,} bytes", f"{max_bytes:,}-byte"
        raise InputError(
            f"{source}: the file is {size}, over the {limit} limit.",
            fix="split it, or raise the size limit in the chunking settings",
        )
    ext = os.path.splitext(source)[1].lower()
    kind = sniff_format(data)
    if ext == ".pdf" and kind != "pdf":
        what = "text" if kind == "text" else kind
        if kind == "text":
            text = data[:2048].decode("utf-8", "replace")
            what = "an HTML page (perhaps a saved error page)" if _looks_html(text) else "text"
        raise InputError(
            f"{source}: named .pdf but it is not a PDF.",
            found=f"content that looks like {what}",
            fix="upload the real PDF, or rename the file to match its content",
        )
    if kind == "pdf":
        if ext != ".pdf":
            warnings.append(f"named {ext or 'without extension'} but it is a PDF; read as PDF")
        pages, pdf_warnings = parse_pdf(data, source, on_page=on_page)
        return _document(source, data, "pdf", pages, warnings + pdf_warnings)
    if kind != "text":
        raise _reject_kind(source, ext, kind)
    if ext not in TEXT_EXTENSIONS and ext not in HTML_EXTENSIONS:
        raise InputError(
            f"{source}: the extension {ext or '(none)'} is not supported.",
            fix=f"upload one of {', '.join(SUPPORTED_EXTENSIONS)}",
        )
    text, text_warnings = decode_text(data, source)
    warnings += text_warnings
    if ext in HTML_EXTENSIONS or (ext not in {".md", ".markdown"} and _looks_html(text)):
        if ext not in HTML_EXTENSIONS:
            warnings.append(f"named {ext} but it is HTML; read as HTML")
        doc_kind, text = "html", html_to_text(text)
    else:
        doc_kind = TEXT_EXTENSIONS[ext]
        text = normalize_text(text)
    if not text.strip():
        raise InputError(f"{source}: the file has no text.", fix="check that it is the right file")
    if on_page:
        on_page(1, 1)
    return _document(source, data, doc_kind, [Page(None, text)], warnings)


def _document(
    source: str, data: bytes, kind: str, pages: list[Page], warnings: list[str]
) -> ParsedDocument:
    return ParsedDocument(
        source=source,
        doc_id=doc_id_for(data),
        kind=kind,
        pages=tuple(pages),
        size_bytes=len(data),
        warnings=tuple(warnings),
    )


def normalize_text(text: str) -> str:
    """Unify line endings, drop NULs and trailing spaces, collapse runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_text(html: str) -> str:
    """HTML to Markdown-flavoured text with html2text (links and images dropped)."""
    import html2text

    converter = html2text.HTML2Text()
    converter.ignore_links = True
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.body_width = 0  # no hard wrapping: chunkers split on paragraphs instead
    converter.unicode_snob = True
    return normalize_text(converter.handle(html))


def count_pages(filename: str, data: bytes) -> int:
    """Cheap page count for progress totals: a PDF's page count, else 1 (never raises)."""
    if sniff_format(data) != "pdf":
        return 1
    try:
        import pymupdf

        with pymupdf.open(stream=data, filetype="pdf") as doc:
            return max(1, doc.page_count)
    except Exception:  # noqa: BLE001 - parse_file reports the real problem
        return 1


def parse_pdf(
    data: bytes, source: str, on_page: Callable[[int, int], None] | None = None
) -> tuple[list[Page], list[str]]:
    """Read each page's text in reading order (two-column pages left column first).

    Pages without text (images only) are left out with a warning; a PDF with no text at all is
    rejected as scanned.
    """
    import pymupdf

    pymupdf.TOOLS.mupdf_display_errors(False)
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - pymupdf raises several types for bad bytes
        raise InputError(
            f"{source}: the PDF is corrupt and cannot be opened.",
            found=str(exc)[:200],
            fix="re-export or re-download the PDF",
        ) from exc
    n_pages = doc.page_count
    with doc:
        if doc.needs_pass and not doc.authenticate(""):
            raise InputError(
                f"{source}: the PDF is encrypted with a password.",
                fix="remove the password (e.g. `qpdf --decrypt --password=... in.pdf out.pdf`) "
                "and upload the decrypted copy",
            )
        if doc.page_count == 0:
            raise InputError(
                f"{source}: the PDF is corrupt: no page could be read.",
                found="; ".join(pymupdf.TOOLS.mupdf_warnings().splitlines()[:3]) or None,
                fix="re-export or re-download the PDF",
            )
        pages: list[Page] = []
        empty: list[int] = []
        image_pages = 0
        for index in range(doc.page_count):
            try:
                page = doc.load_page(index)
                text = page_text(page)
                if not text.strip() and page.get_images():
                    image_pages += 1
            except Exception as exc:  # noqa: BLE001 - one bad page should not lose the rest
                raise InputError(
                    f"{source}: page {index + 1} of the PDF is corrupt.",
                    found=str(exc)[:200],
                    fix="re-export or re-download the PDF",
                ) from exc
            if text.strip():
                pages.append(Page(index + 1, text))
            else:
                empty.append(index + 1)
            if on_page:
                on_page(index + 1, doc.page_count)
        pymupdf.TOOLS.mupdf_warnings()  # clear the buffer
    if not pages:
        why = "its pages are images only (a scan?)" if image_pages else "its pages have no text"
        raise InputError(
            f"{source}: the PDF has no text layer; {why}.",
            found=f"{n_pages} pages, 0 characters of text",
            fix="run OCR first (e.g. `ocrmypdf in.pdf out.pdf`) and upload the result",
        )
    warnings = []
    if empty:
        warnings.append(
            f"{len(empty)} page(s) without text were skipped (images only?): {_ranges(empty)}"
        )
    return pages, warnings


def page_text(page) -> str:  # noqa: ANN001 - pymupdf.Page
    """One page's text: blocks in reading order, lines of a block joined, blocks by blank lines.

    Reading order: blocks sorted top to bottom; where a horizontal band holds blocks in both the
    left and the right half of the page (two columns), the left column comes before the right.
    Full-width blocks (titles, single-column text) end a band.
    """

    blocks = [b for b in page.get_text("blocks") if b[6] == 0 and b[4].strip()]
    # Bare page numbers in the top or bottom margin are furniture, not content.
    margin = page.rect.height * 0.08
    blocks = [
        b
        for b in blocks
        if not (
            _PAGE_NUMBER.match(b[4])
            and (b[3] < page.rect.y0 + margin or b[1] > page.rect.y1 - margin)
        )
    ]
    mid = (page.rect.x0 + page.rect.x1) / 2
    tolerance = page.rect.width * 0.02
    ordered: list[tuple] = []
    band: list[tuple] = []

    def flush() -> None:
        left = [b for b in band if b[2] <= mid + tolerance]
        right = [b for b in band if b[2] > mid + tolerance]
        ordered.extend(sorted(left, key=lambda b: (b[1], b[0])))
        ordered.extend(sorted(right, key=lambda b: (b[1], b[0])))
        band.clear()

    for block in sorted(blocks, key=lambda b: (b[1], b[0])):
        x0, x1 = block[0], block[2]
        full_width = x0 < mid - tolerance and x1 > mid + tolerance
        if full_width:
            flush()
            ordered.append(block)
        else:
            band.append(block)
    flush()
    # A hyphen at a line end joins the halves ("Slack-\nware" -> "Slack-ware"); other line
    # breaks inside a block are soft wraps.
    paragraphs = [_clean_block(b[4]) for b in ordered]
    return "\n\n".join(p for p in paragraphs if p)


def _clean_block(text: str) -> str:
    text = _DOT_LEADER.sub(" ... ", _LINE_HYPHEN.sub("-", text))
    return re.sub(r"\s+", " ", text).strip()


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}-{prev}" if prev != start else str(start))
        if n is not None:
            start = prev = n
    return ", ".join(parts)
