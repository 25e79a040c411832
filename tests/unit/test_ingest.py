"""Parsing: real PDFs generated with pymupdf, text formats, and every kind of bad input."""

from __future__ import annotations

import pymupdf
import pytest

from core.documents.parsing import (
    decode_text,
    format_size,
    parse_file,
    sanitize_filename,
    sniff_format,
)
from core.errors import InputError

PAGE_SENTENCES = [
    "Aardvarks dig burrows at night in the savanna.",
    "Bicycles need their chains oiled every month.",
    "Comets grow tails when they come close to the sun.",
]
LEFT_COLUMN = (
    "The left column explains how glaciers carve valleys over thousands of years, "
    "grinding rock into fine flour that colours meltwater lakes a milky blue."
)
RIGHT_COLUMN = (
    "The right column describes coral reefs, built by tiny polyps that live together "
    "with algae and need warm, clear and shallow water."
)


def make_pdf(pages: list[str]) -> bytes:
    """A PDF with one text box per page."""
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 770), text, fontsize=11)
    return doc.tobytes()


def make_two_column_pdf() -> bytes:
    """A title across the page, then two columns; the right column is written first."""
    doc = pymupdf.open()
    page = doc.new_page()  # 595 x 842
    page.insert_textbox(pymupdf.Rect(50, 40, 545, 70), "Two Column Report", fontsize=16)
    page.insert_textbox(pymupdf.Rect(310, 90, 545, 400), RIGHT_COLUMN, fontsize=11)
    page.insert_textbox(pymupdf.Rect(50, 90, 285, 400), LEFT_COLUMN, fontsize=11)
    return doc.tobytes()


def make_image_page(doc: pymupdf.Document) -> None:
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 60, 40), False)
    pix.set_rect(pix.irect, (200, 30, 30))
    page = doc.new_page()
    page.insert_image(pymupdf.Rect(72, 72, 372, 272), pixmap=pix)


def squash(text: str) -> str:
    return " ".join(text.split())


def test_multi_page_pdf_keeps_text_and_page_numbers():
    data = make_pdf(PAGE_SENTENCES)
    doc = parse_file("animals.pdf", data)
    assert doc.kind == "pdf"
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert [squash(p.text) for p in doc.pages] == PAGE_SENTENCES
    assert doc.source == "animals.pdf"
    assert doc.n_chars == sum(len(s) for s in PAGE_SENTENCES)
    assert doc.doc_id == parse_file("copy.pdf", data).doc_id  # content hash, not name


def test_two_column_pdf_reads_left_column_before_right():
    doc = parse_file("report.pdf", make_two_column_pdf())
    text = squash(doc.pages[0].text)
    # Whole columns, in reading order, never interleaved line by line.
    assert text == f"Two Column Report {LEFT_COLUMN} {RIGHT_COLUMN}"


def test_encrypted_pdf_is_rejected_with_the_reason():
    src = pymupdf.open(stream=make_pdf(["secret text"]), filetype="pdf")
    data = src.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="hunter2", owner_pw="own")
    with pytest.raises(InputError, match=r"locked\.pdf: the PDF is encrypted with a password"):
        parse_file("locked.pdf", data)


def test_owner_password_only_pdf_is_read():
    src = pymupdf.open(stream=make_pdf(["open to read"]), filetype="pdf")
    data = src.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="own", user_pw="")
    assert squash(parse_file("perm.pdf", data).pages[0].text) == "open to read"


def test_scanned_pdf_without_text_layer_is_rejected():
    doc = pymupdf.open()
    make_image_page(doc)
    make_image_page(doc)
    with pytest.raises(InputError, match=r"scan\.pdf: the PDF has no text layer.*images only"):
        parse_file("scan.pdf", doc.tobytes())


def test_image_page_inside_text_pdf_is_skipped_with_a_warning():
    doc = pymupdf.open(stream=make_pdf(PAGE_SENTENCES[:1]), filetype="pdf")
    make_image_page(doc)
    parsed = parse_file("mixed.pdf", doc.tobytes())
    assert [p.number for p in parsed.pages] == [1]
    assert parsed.warnings == ("1 page(s) without text were skipped (images only?): 2",)


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7\n" + bytes(range(256)) * 8, make_pdf(PAGE_SENTENCES)[:300]],
    ids=["garbage", "truncated"],
)
def test_corrupt_pdf_is_rejected(data):
    with pytest.raises(InputError, match=r"broken\.pdf: the PDF is corrupt"):
        parse_file("broken.pdf", data)


def test_zero_byte_file_is_rejected():
    with pytest.raises(InputError, match=r"empty\.txt: the file is empty \(0 bytes\)"):
        parse_file("empty.txt", b"")


def test_pdf_extension_on_html_is_rejected():
    html = b"<!DOCTYPE html><html><body>Access denied</body></html>"
    with pytest.raises(InputError, match=r"named \.pdf but it is not a PDF.*HTML page"):
        parse_file("paper.pdf", html)


def test_png_named_txt_is_rejected():
    png = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 4, 4), False).tobytes("png")
    assert sniff_format(png) == "PNG image"
    with pytest.raises(
        InputError, match=r"notes\.txt: the file named \.txt but its content is a PNG"
    ):
        parse_file("notes.txt", png)


def test_docx_is_rejected_with_a_fix():
    with pytest.raises(
        InputError, match=r"\.docx files are not supported.*export the document as PDF"
    ):
        parse_file("memo.docx", b"PK\x03\x04" + b"\x00" * 64)


def test_pdf_named_txt_is_read_as_pdf_with_a_warning():
    parsed = parse_file("oops.txt", make_pdf(PAGE_SENTENCES[:1]))
    assert parsed.kind == "pdf"
    assert "named .txt but it is a PDF; read as PDF" in parsed.warnings


def test_unknown_extension_is_rejected():
    with pytest.raises(InputError, match=r"the extension \.csv is not supported"):
        parse_file("table.csv", b"a,b\n1,2\n")


def test_cp1252_text_is_decoded_with_a_warning():
    data = "Caf\u00e9 \u2013 na\u00efve r\u00e9sum\u00e9".encode("cp1252")
    parsed = parse_file("legacy.txt", data)
    assert parsed.pages[0].text == "Caf\u00e9 \u2013 na\u00efve r\u00e9sum\u00e9"
    assert parsed.pages[0].number is None
    assert any("not valid UTF-8" in w and "cp1252" in w for w in parsed.warnings)


def test_utf8_bom_is_stripped_silently():
    text, warnings = decode_text("\ufeffhello".encode(), "bom.txt")
    assert (text, warnings) == ("hello", [])


def test_binary_named_txt_is_rejected():
    with pytest.raises(
        InputError, match=r"blob\.txt: the file named \.txt but its content is a binary"
    ):
        parse_file("blob.txt", b"\x00\x01\x02\x03" * 100)


def test_file_over_the_size_limit_is_rejected():
    with pytest.raises(
        InputError, match=r"big\.txt: the file is 200 bytes, over the 100 bytes limit"
    ):
        parse_file("big.txt", b"x" * 200, max_bytes=100)
    assert parse_file("ok.txt", b"x" * 100, max_bytes=100).n_chars == 100
    with pytest.raises(InputError, match=r"the file is 3 KB, over the 2\.5 KB limit\."):
        parse_file("mid.txt", b"x" * 3072, max_bytes=2560)
    # Sizes that round alike are given in bytes, so the message never reads "1 MB over 1 MB".
    with pytest.raises(InputError, match=r"1,048,577 bytes, over the 1,048,576-byte limit"):
        parse_file("edge.txt", b"x" * (1024 * 1024 + 1), max_bytes=1024 * 1024)


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [(0, "0 bytes"), (1, "1 byte"), (1023, "1023 bytes"), (1024, "1 KB"), (1536, "1.5 KB"),
     (1024 * 1024 - 1, "1024 KB"), (1024 * 1024, "1 MB"), (50 * 1024 * 1024, "50 MB"),
     (int(2.25 * 1024 * 1024), "2.2 MB")],
)  # fmt: skip
def test_sizes_are_given_in_a_readable_unit(n_bytes, text):
    assert format_size(n_bytes) == text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be-bom", "utf-32"])
def test_utf16_and_utf32_text_with_a_bom_is_decoded_with_a_warning(encoding):
    text = "Caf\u00e9 \u2013 r\u00e9sum\u00e9 \u65e5\u672c \U0001f600\nsecond line"
    if encoding == "utf-16-be-bom":
        data = b"\xfe\xff" + text.encode("utf-16-be")
    else:
        data = text.encode(encoding)  # Python writes the BOM, little-endian here
    assert sniff_format(data) == "text"
    parsed = parse_file("wide.txt", data)
    assert parsed.pages[0].text == text
    label = "UTF-32" if encoding == "utf-32" else "UTF-16"
    assert parsed.warnings == (
        f"the text is {label}, not UTF-8; it was decoded as {label} (save it as UTF-8 to avoid "
        "this warning)",
    )


def test_broken_utf16_is_refused_with_the_hint_to_save_as_utf8():
    with pytest.raises(InputError, match="not valid UTF-16") as excinfo:
        decode_text("odd length".encode("utf-16")[:-1], "cut.txt")
    assert "save it as UTF-8" in str(excinfo.value)
    binary = b"\xff\xfe" + bytes(range(32)) * 20  # a BOM, then control characters
    with pytest.raises(InputError, match="content is binary"):
        decode_text(binary, "junk.txt")
    assert sniff_format("no BOM".encode("utf-16-le")) == "binary data"  # NULs without a BOM


def test_html_becomes_text_without_tags_or_scripts():
    html = (
        "<html><head><title>T</title><style>p{color:red}</style>"
        "<script>var secret = 1;</script></head><body><h1>Install guide</h1>"
        "<p>Run <b>apt install</b> as root.</p><ul><li>first</li><li>second</li></ul></body></html>"
    )
    parsed = parse_file("guide.html", html.encode())
    text = parsed.pages[0].text
    assert parsed.kind == "html"
    assert "# Install guide" in text
    assert "Run apt install as root." in text
    assert "secret" not in text and "<" not in text and "color" not in text


def test_markdown_and_text_are_normalised():
    parsed = parse_file("notes.md", b"# Title\r\n\r\n\r\n\r\nBody line.   \r\n")
    assert parsed.kind == "md"
    assert parsed.pages[0].text == "# Title\n\nBody line."


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\evil.pdf", "evil.pdf"),
        ("..", "document"),
        (".hidden.md", "hidden.md"),
        ("a<b>:c|d?.txt", "a_b_c_d_.txt"),
        ("line\nbreak\x00.txt", "linebreak.txt"),
        ("r\u00e9sum\u00e9 2024.pdf", "r\u00e9sum\u00e9 2024.pdf"),
        ("x" * 300 + ".pdf", "x" * 116 + ".pdf"),
    ],
)
def test_sanitize_filename(raw, clean):
    assert sanitize_filename(raw) == clean


def test_parse_reports_a_sanitised_name():
    parsed = parse_file("../../secret/notes.txt", b"hello")
    assert parsed.source == "notes.txt"
    assert parsed.warnings == ("file name '../../secret/notes.txt' was sanitised to 'notes.txt'",)
