"""A corpus of awkward and broken table files, written on demand (large cases are generated, not committed).

Each case is ``(name, writer, expectation)``: ``writer(directory) -> Path`` makes the file;
``expectation`` is either ``("error", words)`` — a :class:`DataError` whose message contains every word —
or ``("ok", check)`` — loading succeeds and ``check(labelled_texts)`` holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Tuple

import pandas as pd

Case = Tuple[str, Callable[[Path], Path], tuple]


def _text(name: str, content: str, encoding: str = "utf-8") -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        path = directory / name
        path.write_bytes(content.encode(encoding))
        return path
    return write


def _bytes(name: str, content: bytes) -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        path = directory / name
        path.write_bytes(content)
        return path
    return write


def _frame(name: str, frame_factory: Callable[[], pd.DataFrame]) -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        path = directory / name
        frame = frame_factory()
        if name.endswith(".parquet"):
            frame.to_parquet(path)
        elif name.endswith(".xlsx"):
            frame.to_excel(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return path
    return write


def _excel_two_sheets(directory: Path) -> Path:
    path = directory / "two_sheets.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"text": ["good", "bad", "fine"], "label": ["pos", "neg", "pos"]}).to_excel(
            writer, sheet_name="train", index=False)
        pd.DataFrame({"notes": ["nothing here"]}).to_excel(writer, sheet_name="notes", index=False)
    return path


def _jsonl(name: str, rows: List[dict]) -> Callable[[Path], Path]:
    return _text(name, "\n".join(json.dumps(row) for row in rows) + "\n")


def _big_rows(directory: Path) -> Path:
    path = directory / "big.csv"
    frame = pd.DataFrame({"text": [f"row number {i} is fine" for i in range(200_000)],
                          "label": ["a", "b"] * 100_000})
    frame.to_csv(path, index=False)
    return path


def _huge_cell(directory: Path) -> Path:
    path = directory / "huge_cell.csv"
    frame = pd.DataFrame({"text": ["word " * 2_000_000, "short text", "another one"], "label": ["x", "y", "x"]})
    frame.to_csv(path, index=False)
    return path


def _ok(check: Callable) -> tuple:
    return ("ok", check)


def _error(*words: str) -> tuple:
    return ("error", words)


CASES: List[Case] = [
    ("empty file", _bytes("empty.csv", b""), _error("empty")),
    ("whitespace only", _text("blank.csv", "   \n\n  \n"), _error("empty")),
    ("header only", _text("header.csv", "text,label\n"), _error("no data rows")),
    ("binary garbage named .csv", _bytes("garbage.csv", bytes(range(256)) * 40), _error("binary")),
    ("zip archive named .csv", _bytes("archive.csv", b"PK\x03\x04" + b"\x00" * 200), _error("binary")),
    ("latin-1 encoding", _text("latin1.csv", "text,label\ncafé crème,good\nsoupe froide,bad\n", "latin-1"),
     _ok(lambda t: t.texts[0] == "café crème")),
    ("UTF-16 with BOM", _text("utf16.csv", "text,label\nnaïve idea,good\nbad one,bad\n", "utf-16"),
     _ok(lambda t: t.texts[0] == "naïve idea")),
    ("UTF-8 with BOM", _text("bom.csv", "\ufefftext,label\nfine,good\nawful,bad\n"),
     _ok(lambda t: t.text_column == "text" and t.labels == ["good", "bad"])),
    ("semicolon delimiter", _text("semi.csv", "text;label\nnice, really;good\nbad, really;bad\n"),
     _ok(lambda t: t.texts == ["nice, really", "bad, really"])),
    ("pipe delimiter", _text("pipe.csv", "text|label\nnice|good\nbad|bad\n"),
     _ok(lambda t: t.labels == ["good", "bad"])),
    ("quoted newlines", _text("newlines.csv", 'text,label\n"line one\nline two",good\n"x",bad\n'),
     _ok(lambda t: t.texts[0] == "line one\nline two")),
    ("unquoted delimiter in text", _text("shifted.csv", "text,label\nhello, world,good\nbye,bad\n"),
     _error("more fields than the header", "quotes")),
    ("no column named like a text", _text("nocol.csv", "comment_body,label\nlong words here,b\nmore words,d\n"),
     _ok(lambda t: t.text_column == "comment_body")),
    ("one column only", _text("onecol.csv", "text\nhello\nworld\n"), _error("one column")),
    ("empty texts", _text("emptytext.csv", "text,label\nfine,good\n,bad\n   ,good\nok,bad\n"),
     _error("empty text", "row 2", "3")),
    ("NaN labels", _text("nanlabel.csv", "text,label\nfine,good\nmeh,\nbad,bad\n"),
     _error("row 2", "label")),
    ("single class", _text("oneclass.csv", "text,label\na,good\nb,good\nc,good\n"), _error("single class")),
    ("one row per class", _text("perclass.csv", "text,label\na,x\nb,y\nc,z\n"),
     _ok(lambda t: len(set(t.labels)) == 3)),
    ("thousands of distinct labels",
     _frame("ids.csv", lambda: pd.DataFrame({"text": [f"text {i}" for i in range(3000)],
                                             "label": [f"id-{i}" for i in range(3000)]})),
     _ok(lambda t: any("really the label column" in w for w in t.warnings))),
    ("numeric and string labels mixed", _jsonl("mixed.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "1"},
                                                               {"text": "c", "label": 0}]),
     _ok(lambda t: t.labels == [1, 1, 0])),
    ("labels with stray whitespace", _text("spaces.csv", "text,label\na, good\nb,good \nc,bad\n"),
     _ok(lambda t: t.labels == ["good", "good", "bad"])),
    ("labels differing only by case", _text("case.csv", "text,label\na,Good\nb,good\nc,bad\n"),
     _ok(lambda t: any("case" in w for w in t.warnings))),
    ("numbers with text in them", _text("target.csv", "text,label\n" + "".join(
        f"t{i},{i / 4}\n" for i in range(12)) + "u,oops\n"), _error("row 13", "oops", "not numbers")),
    ("mixed label separators", _text("mixed.csv", "text,label\na,joy;love\nb,joy\nc,love|joy\nd,love\n"),
     _error("row 3", "mixes")),
    ("a 10 MB cell", _huge_cell, _ok(lambda t: len(t.texts[0]) == 10_000_000 and any("long" in w for w in t.warnings))),
    ("200k rows", _big_rows, _ok(lambda t: len(t) == 200_000)),
    ("formula-looking cells", _text("formula.csv", 'text,label\n"=1+2",good\n"@SUM(A1)",bad\n"+cmd",good\n"-x",bad\n'),
     _ok(lambda t: t.texts == ["=1+2", "@SUM(A1)", "+cmd", "-x"])),
    ("HTML and script in texts", _text("html.csv", 'text,label\n"<script>alert(1)</script>",bad\n"<b>bold</b>",good\n'),
     _ok(lambda t: t.texts[0] == "<script>alert(1)</script>")),
    ("unsupported extension", _text("notes.docx", "hello"), _error("unsupported file type", ".csv")),
    ("Excel with several sheets", _excel_two_sheets,
     _ok(lambda t: t.labels == ["pos", "neg", "pos"] and any("notes" in w for w in t.warnings))),
    ("Parquet with numeric texts",
     _frame("numbers.parquet", lambda: pd.DataFrame({"text": [1, 2, 3], "label": ["a", "b", "a"]})),
     _ok(lambda t: t.texts == ["1", "2", "3"])),
    ("JSON that is not a table", _text("scalar.json", '"just a string"'), _error("could not be read")),
    ("broken JSONL line", _text("broken.jsonl", '{"text": "a", "label": "x"}\n{"text": \n'),
     _error("could not be read")),
]


# Files a client names instead of uploading them (an outsider's API call): every file event of the app refuses each
# one, with one message that quotes nothing of the file (tests/test_app_uploads.py). ``where(original, uploads)``
# gives the path sent for ``original``, a readable server file outside Gradio's upload folder ``uploads``.
def _link_out(original: Path, uploads: Path) -> str:
    link = uploads / f"link-out{original.suffix}"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(original)
    return str(link)


SERVER_PATH_CASES: List[Tuple[str, Callable[[Path, Path], str]]] = [
    ("server file with an allowed extension", lambda original, uploads: str(original)),
    ("link inside the upload folder pointing out", _link_out),
    ("dot-dot path starting in the upload folder", lambda original, uploads: str(uploads) + "/../" * 8 +
     str(original).lstrip("/")),
    ("relative path", lambda original, uploads: str(Path("..") / ".." / original.name)),
]
