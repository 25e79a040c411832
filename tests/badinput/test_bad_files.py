"""Bad uploads on the Documents stage (and bad question-set files on the Questions stage).

Each case feeds one bad file together with a good one into `build_corpus`: the bad file is
skipped with a message naming the file, the problem and the fix; the good file still makes the
corpus; the run records the reason in documents.json; and the runs saved before are untouched.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
from collections.abc import Callable

import pymupdf
import pytest

from core.documents.corpus import load_chunks
from core.documents.parsing import MAX_NAME_CHARS
from core.documents.stage import (
    DOCUMENTS_FILE,
    FILES_DIR,
    UploadedFile,
    build_corpus,
    load_documents,
    remove_documents,
)
from core.errors import InputError
from core.runs.folders import list_runs, load_run

# --------------------------------------------------------------------------- file factories


def good_file(name: str = "good.txt") -> UploadedFile:
    """A small file that always parses."""
    return UploadedFile(name, b"Good text about mirrors and the apt tool, long enough to chunk.")


def text_pdf(*pages: str) -> bytes:
    doc = pymupdf.open()
    for text in pages:
        doc.new_page().insert_text((72, 72), text)
    return doc.tobytes()


def _png() -> bytes:
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
    pix.set_rect(pix.irect, (200, 30, 30))
    return pix.tobytes("png")


def scanned_pdf(n_pages: int = 2, text_pages: tuple[str, ...] = ()) -> bytes:
    """Pages holding only an image (what a scanner makes), then optional text pages."""
    doc = pymupdf.open()
    for _ in range(n_pages):
        doc.new_page().insert_image(pymupdf.Rect(50, 50, 300, 300), stream=_png())
    for text in text_pages:
        doc.new_page().insert_text((72, 72), text)
    return doc.tobytes()


def encrypted_pdf(user_pw: str = "secret") -> bytes:
    doc = pymupdf.open(
        stream=text_pdf("Confidential minutes of the board meeting."), filetype="pdf"
    )
    return doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=user_pw, owner_pw="owner")


def docx_bytes() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document>Hello</w:document>")
    return buffer.getvalue()


def sample_pdf_prefix(fraction: float) -> bytes:
    from core.documents.stage import SAMPLE_PDF

    data = SAMPLE_PDF.read_bytes()
    return data[: int(len(data) * fraction)]


# (case id, file name, bytes factory, words the skip reason must hold)
SKIPPED: list[tuple[str, str, Callable[[], bytes], list[str]]] = [
    ("encrypted", "minutes.pdf", encrypted_pdf,
     ["minutes.pdf", "encrypted with a password", "Fix:", "qpdf --decrypt"]),
    ("scanned", "scan.pdf", scanned_pdf,
     ["scan.pdf", "no text layer", "images only (a scan?)", "2 pages, 0 characters", "ocrmypdf"]),
    ("corrupt", "broken.pdf", lambda: b"%PDF-1.7\n" + bytes(range(256)) * 20,
     ["broken.pdf", "PDF is corrupt", "cannot be opened", "re-download"]),
    ("truncated", "half.pdf", lambda: sample_pdf_prefix(0.5),
     ["half.pdf", "corrupt", "no page could be read", "startxref", "re-download"]),
    ("header-only", "stub.pdf", lambda: b"%PDF-1.4\n", ["stub.pdf", "corrupt"]),
    ("empty", "empty.txt", lambda: b"", ["empty.txt", "empty (0 bytes)", "upload the real file"]),
    ("whitespace-only", "blank.md", lambda: b"  \n\n\t \r\n", ["blank.md", "has no text"]),
    ("text-named-pdf", "report.pdf", lambda: b"Quarterly report: sales went up.",
     ["report.pdf", "named .pdf but it is not a PDF", "looks like text", "rename the file"]),
    ("html-error-page-named-pdf", "paper.pdf",
     lambda: b"<!DOCTYPE html><html><body>403 Forbidden</body></html>",
     ["paper.pdf", "not a PDF", "HTML page (perhaps a saved error page)"]),
    ("png-named-txt", "notes.txt", _png, ["notes.txt", "named .txt", "PNG image"]),
    ("zip-named-md", "readme.md", docx_bytes, ["readme.md", "content is a zip"]),
    ("docx", "thesis.docx", docx_bytes,
     ["thesis.docx", ".docx files are not supported", "export the document as PDF"]),
    ("binary-named-txt", "data.txt", lambda: bytes(range(256)) * 8, ["data.txt", "binary"]),
    ("utf16-without-bom", "utf16.txt", lambda: "Hello wide world".encode("utf-16-le"),
     ["utf16.txt", "binary"]),
    ("utf16-bom-truncated", "cut.txt", lambda: "Hello wide world".encode("utf-16")[:-1],
     ["cut.txt", "UTF-16 byte order mark but is not valid UTF-16", "save it as UTF-8"]),
    ("elf-named-txt", "tool.txt", lambda: b"\x7fELF\x02\x01\x01" + bytes(200), ["tool.txt", "executable"]),
    ("unsupported-extension", "script.exe", lambda: b"plain words in an exe name",
     ["script.exe", "extension .exe is not supported", ".pdf"]),
    ("no-extension", "README", lambda: b"plain words without an extension",
     ["README", "extension (none) is not supported"]),
    ("html-without-text", "empty.html", lambda: b"<html><script>var a=1;</script></html>",
     ["empty.html", "has no text"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "factory", "words"),
    [pytest.param(n, f, w, id=i) for i, n, f, w in SKIPPED],
)
def test_a_bad_file_is_skipped_with_a_clear_reason_and_the_good_one_kept(
    baseline, name, factory, words
):
    result = build_corpus([UploadedFile(name, factory()), good_file()])

    skipped = result.skipped_files
    assert [f.original_name for f in skipped] == [name]
    for word in words:
        assert word in skipped[0].reason, (word, skipped[0].reason)
    assert [f.name for f in result.ok_files] == ["good.txt"]
    run = load_run(result.run.id)
    assert run.manifest.status == "done" and run.manifest.summary["n_skipped"] == 1
    saved = json.loads(run.artifact(DOCUMENTS_FILE).read_text(encoding="utf-8"))
    assert [r["status"] for r in saved] == ["skipped", "ok"] and saved[0]["reason"] == skipped[
        0
    ].reason
    # A skipped file's bytes are not kept; only the good file went into the run.
    assert sorted(p.name for p in run.artifact(FILES_DIR).iterdir()) == ["good.txt"]
    assert {c.source for c in load_chunks(run)} == {"good.txt"}
    baseline.intact()


def test_a_file_over_the_size_limit_is_refused_without_reading_it(baseline):
    mb = 1024 * 1024  # the Documents page sets the limit in MB of 1024 * 1024 bytes
    big = b"%PDF-1.7\n" + b"0" * (mb * 3 // 2)  # 1.5 MB against a 1 MB limit; nothing parses it
    result = build_corpus([UploadedFile("big.pdf", big), good_file()], max_bytes=mb)
    reason = result.skipped_files[0].reason
    assert reason.startswith("big.pdf: the file is 1.5 MB, over the 1 MB limit.")
    assert "raise the size limit" in reason
    assert load_run(result.run.id).manifest.config["max_bytes"] == mb
    baseline.intact()


def test_when_every_file_is_bad_it_is_refused_with_every_reason_and_no_run(baseline):
    files = [UploadedFile("a.pdf", b"not a pdf"), UploadedFile("b.txt", b"")]
    with pytest.raises(InputError) as excinfo:
        build_corpus(files)
    message = str(excinfo.value)
    assert message.startswith("None of the files could be used.")
    assert "a.pdf: named .pdf but it is not a PDF" in message
    assert "b.txt: the file is empty (0 bytes)" in message
    assert ".." not in message  # each reason's own full stop is not doubled
    assert not [r for r in list_runs("corpus") if r.manifest.status == "failed"]  # no half-made run
    baseline.intact()


# --------------------------------------------------------------------------- accepted, with a warning

WARNED: list[tuple[str, str, Callable[[], bytes], str, str]] = [
    ("pdf-named-txt", "paper.txt", lambda: text_pdf("Mirrors carry the Debian archive."),
     "named .txt but it is a PDF; read as PDF", "Mirrors carry the Debian archive."),
    ("cp1252-text", "legacy.txt", lambda: "Café crème: naïve résumé – 5 €".encode("cp1252"),
     "not valid UTF-8 (first bad byte at offset 3); decoded as cp1252", "Café crème: naïve résumé – 5 €"),
    ("utf16-le-with-bom", "notepad.txt", lambda: "Hello wide world: caf\u00e9".encode("utf-16"),
     "decoded as UTF-16 (save it as UTF-8", "Hello wide world: caf\u00e9"),
    ("utf16-be-with-bom", "mac.md", lambda: b"\xfe\xff" + "# Title\n\nBig end".encode("utf-16-be"),
     "decoded as UTF-16", "Big end"),
    ("latin1-only-bytes", "old.txt", lambda: b"Stra\xdfe und M\xfcller \x81\x8d",
     "decoded as latin-1", "Straße und Müller"),
    ("html-named-txt", "page.txt",
     lambda: b"<!DOCTYPE html><html><body><h1>Title</h1><p>Body text here.</p></body></html>",
     "named .txt but it is HTML; read as HTML", "Body text here."),
    ("scanned-pages-among-text", "mixed.pdf",
     lambda: scanned_pdf(2, ("Page three has words.", "Page four has words.")),
     "2 page(s) without text were skipped (images only?): 1-2", "Page three has words."),
    ("owner-password-only", "locked.pdf", lambda: encrypted_pdf(user_pw=""),
     "", "Confidential minutes of the board meeting."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "factory", "warning", "text"),
    [pytest.param(n, f, w, t, id=i) for i, n, f, w, t in WARNED],
)
def test_a_recoverable_file_is_read_with_a_warning(baseline, name, factory, warning, text):
    result = build_corpus([UploadedFile(name, factory())])
    report = result.files[0]
    assert report.status == "ok", report.reason
    if warning:
        assert any(warning in w for w in report.warnings), report.warnings
    else:
        assert report.warnings == []
    assert any(text in c.text for c in load_chunks(result.run))
    assert load_documents(result.run.id)[0].warnings == report.warnings
    baseline.intact()


# --------------------------------------------------------------------------- names

ODD_NAMES = [
    ("path-traversal", "../../../../tmp/evil.txt", "evil.txt"),
    ("absolute-path", "/etc/passwd.txt", "passwd.txt"),
    ("windows-path", "C:\\Users\\me\\..\\secret.txt", "secret.txt"),
    ("hidden-file", ".bashrc.txt", "bashrc.txt"),
    ("control-chars", "bad\x00na\x1bme\r\n.txt", "badname.txt"),
    ("rtl-override", "invoice\u202etxt.exe.txt", "invoicetxt.exe.txt"),
    ("shell-meta", "a;rm -rf $HOME|x`y`.txt", "a_rm -rf _HOME_x_y_.txt"),
    ("dots-and-slashes", "..././/..//report.txt", "report.txt"),
]


@pytest.mark.parametrize(("name", "expected"), [pytest.param(n, e, id=i) for i, n, e in ODD_NAMES])
def test_odd_and_hostile_file_names_stay_inside_the_run(baseline, data_root, name, expected):
    before = {p for p in data_root.parent.rglob("*")}
    result = build_corpus([UploadedFile(name, b"Some harmless words about apt mirrors.")])
    report = result.files[0]
    assert report.status == "ok" and report.name == expected
    assert report.original_name == name
    if name != expected:
        assert any("was sanitised to" in w for w in report.warnings)
    stored = result.run.artifact(f"{FILES_DIR}/{expected}")
    assert stored.read_bytes() == b"Some harmless words about apt mirrors."
    # Everything new is inside the new run's folder: nothing escaped, nothing overwritten.
    new = {p for p in data_root.parent.rglob("*")} - before
    outside = [p for p in new if result.run.path not in (p, *p.parents)]
    assert outside == []
    baseline.intact()


@pytest.mark.parametrize("name", ["..", "", "../..", "\x00\x01"])
def test_a_name_with_nothing_usable_left_is_refused_and_nothing_is_written(
    baseline, data_root, name
):
    before = {p for p in data_root.parent.rglob("*")}
    with pytest.raises(InputError) as excinfo:
        build_corpus([UploadedFile(name, b"Some harmless words.")])
    assert "document: the extension (none) is not supported" in str(excinfo.value)
    new = {p for p in data_root.parent.rglob("*")} - before
    assert not [p for p in new if p.parent.name == "runs"]  # refused before any run was made
    baseline.intact()


def test_a_very_long_unicode_name_is_shortened_and_keeps_its_extension(baseline):
    name = ("Überblick über Paketverwaltung 🚀 " * 20) + ".md"
    result = build_corpus([UploadedFile(name, b"# Title\n\nSome words.")])
    stored = result.files[0].name
    assert len(stored) <= MAX_NAME_CHARS and stored.endswith(".md")
    assert stored.startswith("Überblick über Paketverwaltung")
    assert not any(unicodedata.category(ch)[0] == "C" for ch in stored)
    assert result.run.artifact(f"{FILES_DIR}/{stored}").is_file()
    baseline.intact()


def test_same_name_twice_keeps_both_and_same_content_twice_keeps_one(baseline):
    result = build_corpus(
        [
            UploadedFile("notes.txt", b"First notes about apt."),
            UploadedFile("notes.txt", b"Second notes about dpkg."),
            UploadedFile("copy.txt", b"First notes about apt."),
        ]
    )
    assert [(f.name, f.status) for f in result.files] == [
        ("notes.txt", "ok"),
        ("notes (2).txt", "ok"),
        ("copy.txt", "skipped"),
    ]
    assert result.files[2].reason == "copy.txt: same content as notes.txt."
    assert any("renamed to 'notes (2).txt'" in w for w in result.files[1].warnings)
    baseline.intact()


def test_removing_a_document_that_is_not_there_names_the_ones_that_are(baseline):
    with pytest.raises(
        InputError, match=r"has no document 'nope.txt'.*Fix: pick one of apt.txt, release.md"
    ):
        remove_documents(baseline.corpus.id, ["nope.txt"])
    baseline.intact()


# --------------------------------------------------------------------------- question-set files


def _latin1_csv() -> bytes:
    return "question,context\nQu'est-ce que la s\xe9curit\xe9 ?,Le texte\n".encode("latin-1")


QA_FILES = [
    ("latin1-csv", "pairs.csv", _latin1_csv, ["Cannot read 'pairs.csv' as CSV", "UnicodeDecodeError"]),
    ("corrupt-parquet", "pairs.parquet", lambda: b"PAR1" + bytes(100),
     ["Cannot read 'pairs.parquet' as PARQUET", "not truncated"]),
    ("broken-jsonl", "pairs.jsonl", lambda: b'{"question": "a?", "context": "b"}\n{"question": ',
     ["Cannot read 'pairs.jsonl' as JSONL"]),
    ("binary-json", "pairs.json", lambda: bytes(range(256)), ["Cannot read 'pairs.json' as JSON"]),
    ("empty-csv", "pairs.csv", lambda: b"question,context\n", ["'pairs.csv' has no rows"]),
    ("unknown-type", "pairs.xlsx", lambda: b"PK\x03\x04", ["unknown file type .xlsx", ".csv"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "factory", "words"), [pytest.param(n, f, w, id=i) for i, n, f, w in QA_FILES]
)
def test_a_bad_question_set_file_is_refused_with_a_clear_reason(baseline, name, factory, words):
    from core.questions.columns import read_table

    with pytest.raises(InputError) as excinfo:
        read_table(name, factory())
    for word in words:
        assert word in str(excinfo.value), (word, str(excinfo.value))
    assert re.search(r"Fix: ", str(excinfo.value))
    baseline.intact()


# --------------------------------------------------------------------------- evaluation inputs

PAIRS_FILES = [
    ("binary", bytes(range(256)) * 4, ["is not a readable CSV"]),
    ("wrong-columns", b"a,b,c\n1,2,3\n", ["needs the columns sentence1, sentence2 and score", "Found: columns a, b, c"]),
    ("text-scores", b"sentence1,sentence2,score\n" + b"a,b,high\n" * 6, ["the score column must be numeric", "high"]),
    ("too-few", b"sentence1,sentence2,label\na,b,1\nc,d,0\n", ["has 2 usable pairs", "at least 5 pairs"]),
    ("one-label", b"sentence1,sentence2,label\n" + b"a,b,1\n" * 6, ["every label is 1", "dissimilar (0)"]),
    ("empty", b"", ["is not a readable CSV"]),
]  # fmt: skip


@pytest.mark.parametrize(("data", "words"), [pytest.param(d, w, id=i) for i, d, w in PAIRS_FILES])
def test_a_bad_similarity_pairs_file_is_refused_with_a_clear_reason(baseline, data, words):
    from core.evaluation.similarity import load_similarity_pairs

    with pytest.raises(InputError) as excinfo:
        load_similarity_pairs(data, name="pairs.csv")
    message = str(excinfo.value)
    assert message.startswith("pairs.csv")
    for word in words:
        assert word in message, (word, message)
    baseline.intact()


def test_questions_pointing_at_another_corpus_are_refused_before_any_work(baseline):
    from core.evaluation.config import RetrievalEvalConfig
    from core.evaluation.stage import evaluate_retrieval
    from core.questions.dataset import QAItem, save_qa
    from core.runs.folders import create_run

    qa = create_run(
        "qa", name="imported for another corpus", parents={"corpus": baseline.corpus.id}
    )
    save_qa(
        qa,
        [QAItem(id=f"x{i}", question="What is apt?", chunk_id=f"c_elsewhere{i}") for i in range(7)],
    )
    qa.set_status("done")

    def no_model(spec):  # noqa: ANN001, ANN202
        raise AssertionError("no model may be loaded for questions that cannot be scored")

    config = RetrievalEvalConfig(qa_run_id=qa.id, split=None, similarity_csv=None)
    with pytest.raises(InputError) as excinfo:
        evaluate_retrieval(config, model_loader=no_model)
    message = str(excinfo.value)
    assert message.startswith(
        f"7 questions point at chunks that are not in corpus run {baseline.corpus.id}."
    )
    assert "Found: question ids x0, x1, x2, x3, x4 …" in message
    assert "regenerate the questions for this corpus run" in message
    assert list_runs("retrieval_eval") == []  # nothing half-made
    baseline.intact()
