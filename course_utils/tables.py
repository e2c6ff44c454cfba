"""Reading the CSV files students bring: pandas' errors turned into messages that name the file and say
what to do. Excel's "Unicode text" export (UTF-16 with a byte order mark) is read as it is; text in another
single-byte encoding (latin-1, cp1252) cannot be told apart from UTF-8 mistakes reliably, so it is refused
with the encoding to pass, never guessed."""
from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["read_csv", "column_name"]

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_csv(csv: str | Path, **kwargs) -> pd.DataFrame:
    """`pd.read_csv(csv, **kwargs)` with clear errors: an empty file, a file that is not UTF-8 (with the line and
    the encoding to pass), or a malformed table (with pandas' line number)."""
    csv = Path(csv)
    if "encoding" not in kwargs and _starts_with(csv, _UTF16_BOMS):
        kwargs["encoding"] = "utf-16"
    try:
        return pd.read_csv(csv, **kwargs)
    except pd.errors.EmptyDataError as e:
        raise ValueError(f"{csv} is empty (or holds only blank lines): a CSV needs a header row naming its columns, "
                         "then one row per item. Was it saved or copied completely?") from e
    except UnicodeDecodeError as e:
        raise ValueError(_not_utf8(csv, e, kwargs.get("encoding"))) from e
    except pd.errors.ParserError as e:
        raise ValueError(f"{csv} is not a well-formed CSV table: {e}. A value that contains commas must be quoted "
                         '("a,b"); check that row.') from e


def _starts_with(path: Path, prefixes: tuple[bytes, ...]) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return any(head.startswith(p) for p in prefixes)


def _not_utf8(csv: Path, e: UnicodeDecodeError, encoding: str | None) -> str:
    where = _first_bad_byte(csv) if encoding in (None, "utf-8", "utf8") else ""
    return (f"{csv} is not UTF-8 text{where}. It was probably saved as latin-1 / cp1252 (Excel on Windows): "
            "re-save it as 'CSV UTF-8', convert it (iconv -f latin1 -t utf-8 in.csv > out.csv), or pass its "
            "encoding, e.g. from_csv(..., encoding='latin-1').")


def _first_bad_byte(csv: Path) -> str:
    """' (line N: byte 0xXX)' for the first byte that is not UTF-8 (pandas' offset is within a chunk)."""
    data = csv.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        return f" (line {line}: byte 0x{data[e.start]:02x})"
    return ""


def column_name(df: pd.DataFrame, cols: int | str, what: str) -> str:
    """The name of column `cols` (an index or a name), with an error that lists the real columns."""
    names = list(df.columns)
    if isinstance(cols, (int, np.integer)):
        if not -len(names) <= cols < len(names):
            raise KeyError(f"The table has {len(names)} columns {names}; there is no column {cols} for the {what}.")
        return names[cols]
    if cols not in names:
        raise KeyError(f"No column {cols!r} for the {what}; the columns are {names}.")
    return cols
