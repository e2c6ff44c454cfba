"""Reading the CSV files students bring: pandas' errors turned into messages that name the file and say
what to do. Excel's "Unicode text" export (UTF-16 with a byte order mark) is read as it is; text in another
single-byte encoding (latin-1, cp1252) cannot be told apart from UTF-8 mistakes reliably, so it is refused
with the encoding to pass, never guessed. A row with more fields than the header (tags separated by unquoted
commas), a header without rows, and zero-padded numbers ("0007", a file name) are caught here too, and names
written in another Unicode form than the files' (macOS writes "é" as "e" + accent) can be matched to them."""
from __future__ import annotations

import codecs
import csv as csvlib
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_csv(csv: str | Path, allow_empty: bool = False, **kwargs) -> pd.DataFrame:
    """`pd.read_csv(csv, **kwargs)` with clear errors: an empty file, a file that is not UTF-8 (with the line and
    the encoding to pass), a malformed table or a row with more fields than the header (with its line), and a
    header without rows (unless `allow_empty`). Integer columns written with leading zeros ("0007") stay text,
    as written, unless `dtype` or `converters` say otherwise."""
    csv = Path(csv)
    if "encoding" not in kwargs and _starts_with(csv, _UTF16_BOMS):
        kwargs["encoding"] = "utf-16"
    df = _read(csv, kwargs)
    if not isinstance(df, pd.DataFrame):  # chunksize= or iterator=: a reader, checked by whoever iterates it
        return df
    if "index_col" not in kwargs and "names" not in kwargs and not isinstance(df.index, pd.RangeIndex):
        # pandas took the first field(s) as the index: the rows have more fields than the header
        raise ValueError(_too_many_fields(csv, kwargs, None))
    if len(df) == 0 and not allow_empty:
        raise ValueError(f"{csv} has a header ({', '.join(map(str, df.columns))}) but no rows: add one row per "
                         "item below it. Was it saved or copied completely?")
    if "dtype" not in kwargs and "converters" not in kwargs:
        df = _keep_zero_padded(csv, df, kwargs)
    return df


def _read(csv: Path, kwargs: dict, **extra) -> pd.DataFrame:
    try:
        return pd.read_csv(csv, **kwargs, **extra)
    except pd.errors.EmptyDataError as e:
        raise ValueError(f"{csv} is empty (or holds only blank lines): a CSV needs a header row naming its columns, "
                         "then one row per item. Was it saved or copied completely?") from e
    except UnicodeDecodeError as e:
        raise ValueError(_not_utf8(csv, e, kwargs.get("encoding"))) from e
    except pd.errors.ParserError as e:
        if re.search(r"Expected \d+ fields in line \d+, saw \d+", str(e)):
            raise ValueError(_too_many_fields(csv, kwargs, str(e).strip())) from e
        raise ValueError(f"{csv} is not a well-formed CSV table: {e}. A value that contains commas must be quoted "
                         '("a,b"); check that row.') from e


def _too_many_fields(csv: Path, kwargs: dict, pandas_says: str | None) -> str:
    """The message for a row with more fields than the header, naming the first such line when it can be found."""
    found = _first_long_row(csv, kwargs)
    if found is None:
        where = f": {pandas_says}" if pandas_says else ""
        return (f"{csv} has rows with more fields than its header{where}. Quote a value that contains commas "
                '("a,b"), or separate tags with spaces.')
    line, header, row = found
    extra = ",".join(row[len(header) - 1:])  # the last column and what spilled over from it
    return (f"{csv}, line {line}, has {len(row)} fields but the header ({','.join(header)}) has {len(header)} "
            f"(tags separated by commas?): quote the value (\"{extra}\") or separate tags with spaces "
            f"({' '.join(row[len(header) - 1:])}).")


def _first_long_row(csv: Path, kwargs: dict) -> tuple[int, list[str], list[str]] | None:
    """(line number, header, row) of the first row with more fields than the header, read with Python's csv."""
    sep = kwargs.get("sep", kwargs.get("delimiter", ","))
    if not isinstance(sep, str) or len(sep) != 1:
        return None  # a regular expression or sniffed separator: leave it to pandas' message
    encoding = kwargs.get("encoding") or "utf-8-sig"
    try:
        with open(csv, newline="", encoding=encoding, errors="replace") as f:
            header = None
            for row in (reader := csvlib.reader(f, delimiter=sep)):
                if not any(field.strip() for field in row):
                    continue  # pandas skips blank lines
                if header is None:
                    header = row
                elif len(row) > len(header):
                    return reader.line_num, header, row
    except (OSError, LookupError, csvlib.Error):
        return None
    return None


def _keep_zero_padded(csv: Path, df: pd.DataFrame, kwargs: dict) -> pd.DataFrame:
    """`df` with each integer column that has a value written with a leading zero ("0007": a name such as an
    image's, not a count) read again as text, so names like 0000.jpg ... 0023.jpg are not read as 0, 1, ...."""
    ints = [c for c in df.columns if pd.api.types.is_integer_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    if not ints:
        return df
    text = _read(csv, kwargs, dtype={c: str for c in ints})
    padded = [c for c in ints if text[c].str.match(r"^\s*[+-]?0\d").any()]
    if padded:
        df = df.copy()
        for c in padded:
            df[c] = text[c]
    return df


def same_names_on_disk(paths: list[Path]) -> list[Path]:
    """`paths`, with each one that does not exist replaced by the existing path whose names are the same after
    Unicode normalisation: a CSV typed on Linux or Windows writes "é" as one character (NFC), while files made
    on macOS often spell it "e" plus an accent (NFD); the names look identical but are different strings.
    Only folders holding a missing path are listed (once each); a path with no such match is kept as it is."""
    listings: dict[Path, dict[str, str] | None] = {}
    resolved: dict[Path, Path] = {}

    def resolve(p: Path) -> Path:
        if p in resolved:
            return resolved[p]
        if p.exists() or p.parent == p:
            resolved[p] = p
            return p
        parent = resolve(p.parent)
        if parent not in listings:
            try:
                names = [q.name for q in parent.iterdir()] if parent.is_dir() else []
            except OSError:
                names = []
            by_form: dict[str, list[str]] = {}
            for n in names:
                by_form.setdefault(unicodedata.normalize("NFC", n), []).append(n)
            listings[parent] = {k: v[0] for k, v in by_form.items() if len(v) == 1}  # ambiguous: no guess
        match = listings[parent].get(unicodedata.normalize("NFC", p.name))
        resolved[p] = parent / match if match is not None else p
        return resolved[p]

    return [p if p.exists() else resolve(p) for p in map(Path, paths)]


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
