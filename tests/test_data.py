"""Data I/O: readers, column detection, validation errors, LabelMap, train/eval split."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finetuner import DataError, LabelMap, LabelledTexts, load_table, read_table, split_train_eval
from finetuner.data import (SUPPORTED_EXTENSIONS, detect_columns, detect_text_column, iter_table_chunks,
                            normalize_label, normalize_labels, table_to_labelled, validate_texts,
                            validate_texts_and_labels)

ROWS = [("I love this film", "positive"), ("Terrible, boring; a waste", "negative"),
        ("Great fun\tfor all", "positive"), ("I hated it", "negative")]
TEXTS = [text for text, _ in ROWS]
LABELS = [label for _, label in ROWS]


def write(path: Path, content, encoding: str = "utf-8") -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode(encoding))
    return path


def frame_of_rows() -> pd.DataFrame:
    return pd.DataFrame({"text": TEXTS, "label": LABELS})


def assert_rows(table: LabelledTexts, texts=TEXTS, labels=LABELS):
    assert table.texts == list(texts)
    assert table.labels == list(labels)
    assert (table.text_column, table.label_column) == ("text", "label")


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sep", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_csv_delimiter_is_sniffed(tmp_path, sep):
    # Texts contain the other delimiters, quoted where they contain this one.
    path = tmp_path / "data.csv"
    frame_of_rows().to_csv(path, sep=sep, index=False)
    assert_rows(load_table(path))


def test_tsv_reads_tab_separated_even_with_commas_in_texts(tmp_path):
    rows = [("a, b, c, d", "x"), ("e, f", "y")]
    path = write(tmp_path / "data.tsv", "text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows))
    table = load_table(path)
    assert table.texts == ["a, b, c, d", "e, f"] and table.labels == ["x", "y"]


def test_txt_is_read_as_delimited(tmp_path):
    path = write(tmp_path / "data.txt", "text;label\nhello there;a\nbye now;b\n")
    assert load_table(path).labels == ["a", "b"]


def test_quoted_newlines_and_delimiters_stay_inside_the_text(tmp_path):
    content = 'text,label\n"Hello, world\nsecond line",positive\n"Bad; ""really"" bad",negative\n'
    table = load_table(write(tmp_path / "data.csv", content))
    assert table.texts == ['Hello, world\nsecond line', 'Bad; "really" bad']
    assert table.labels == ["positive", "negative"]


def test_unquoted_delimiter_in_first_row_is_reported_not_shifted(tmp_path):
    # pandas would silently use the first column as an index and shift every value.
    path = write(tmp_path / "data.csv", "text,label\nhello, world,positive\nbye,negative\nok,positive\n")
    with pytest.raises(DataError) as info:
        load_table(path)
    message = str(info.value)
    assert "data.csv" in message and "row 1" in message and "double quotes" in message


def test_ragged_row_later_in_the_file_names_the_line(tmp_path):
    path = write(tmp_path / "data.csv", "text,label\nbye,negative\nhello, world,positive\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    message = str(info.value)
    assert "data.csv" in message and "could not be read as a CSV table" in message and "line 3" in message


def test_jsonl(tmp_path):
    path = write(tmp_path / "data.jsonl", "\n".join(json.dumps({"text": t, "label": l}) for t, l in ROWS) + "\n")
    assert_rows(load_table(path))


def test_json_array(tmp_path):
    path = write(tmp_path / "data.json", json.dumps([{"text": t, "label": l} for t, l in ROWS], indent=1))
    assert_rows(load_table(path))


def test_json_lines_with_json_extension(tmp_path):
    path = write(tmp_path / "data.json", "\n".join(json.dumps({"text": t, "label": l}) for t, l in ROWS))
    assert_rows(load_table(path))


def test_json_integer_labels_stay_integers(tmp_path):
    path = write(tmp_path / "data.json", json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 0}]))
    table = load_table(path)
    assert table.labels == [1, 0] and all(type(v) is int for v in table.labels)


def test_xlsx(tmp_path):
    path = tmp_path / "data.xlsx"
    frame_of_rows().to_excel(path, index=False, engine="openpyxl")
    assert_rows(load_table(path))


def test_xlsx_integer_labels_and_named_sheet(tmp_path):
    path = tmp_path / "data.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame({"note": ["x"], "other": ["y"]}).to_excel(writer, sheet_name="readme", index=False)
        pd.DataFrame({"text": ["good", "bad", "fine"], "label": [1, 0, 1]}).to_excel(
            writer, sheet_name="train", index=False)
    table = load_table(path, sheet="train")
    assert table.texts == ["good", "bad", "fine"] and table.labels == [1, 0, 1]
    assert list(read_table(path).columns) == ["note", "other"]  # first sheet by default


def test_xlsx_with_several_sheets_warns_and_unknown_sheet_lists_them(tmp_path):
    path = tmp_path / "data.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        frame_of_rows().to_excel(writer, sheet_name="train", index=False)
        frame_of_rows().to_excel(writer, sheet_name="test", index=False)
    table = load_table(path)
    assert_rows(table)
    assert any("2 sheets" in w and "'train'" in w and "'test'" in w for w in table.warnings)
    assert not load_table(path, sheet="test").warnings
    with pytest.raises(DataError, match=r"data.xlsx: no sheet named 'dev'; sheets: 'train', 'test'"):
        load_table(path, sheet="dev")


def test_parquet(tmp_path):
    path = tmp_path / "data.parquet"
    frame_of_rows().to_parquet(path, engine="pyarrow")
    assert_rows(load_table(path))


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16", "utf-8-sig", "utf-8"])
def test_encodings(tmp_path, encoding):
    texts = ["café crème", "naïve señor", "über straße"]
    if encoding == "cp1252":
        texts[2] = "“quoted” – dash €"
    content = "text,label\n" + "".join(f"{t},{l}\n" for t, l in zip(texts, ["a", "b", "a"]))
    table = load_table(write(tmp_path / "data.csv", content, encoding=encoding))
    assert table.texts == texts  # no mojibake, no BOM left in the header
    assert table.text_column == "text"


def test_column_names_are_stripped(tmp_path):
    table = load_table(write(tmp_path / "data.csv", " text , label \nhi,a\nho,b\n"))
    assert (table.text_column, table.label_column) == ("text", "label")


# ---------------------------------------------------------------------------------------------
# Reading in chunks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["data.csv", "data.tsv", "data.jsonl", "data.json", "data.xlsx", "data.parquet"])
def test_chunks_add_up_to_the_whole_table(tmp_path, name):
    path = tmp_path / name
    frame = pd.DataFrame({" text ": [f"text {i}" for i in range(7)], "label": ["a", "b"] * 3 + ["a"]})
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    elif name.endswith(".xlsx"):
        frame.to_excel(path, index=False)
    elif name.endswith(".json"):
        frame.to_json(path, orient="records")
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    chunks = list(iter_table_chunks(path, 3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert all(list(chunk.index) == list(range(len(chunk))) for chunk in chunks)
    whole = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(whole, read_table(path), check_dtype=False)


def test_chunked_reading_takes_the_encoding_from_the_start_of_the_file(tmp_path):
    # The sample that decides the encoding ends inside a two-byte UTF-8 character: still UTF-8, not cp1252.
    padding = "x" * (65536 - len("text,label\n") - 1)
    path = write(tmp_path / "data.csv", f"text,label\n{padding}é,a\ncafé,b\n")
    assert pd.concat(iter_table_chunks(path, 1))["text"].tolist() == [padding + "é", "café"]


def test_chunked_reading_rejects_what_read_table_rejects(tmp_path):
    with pytest.raises(DataError, match="row 1 has more fields than the header"):
        list(iter_table_chunks(write(tmp_path / "data.csv", "text,label\nhello, world,a\nbye,b\n"), 1))
    with pytest.raises(DataError, match="no data rows found"):
        list(iter_table_chunks(write(tmp_path / "data.csv", "text,label\n"), 1))
    with pytest.raises(DataError, match="expected one JSON object per line"):
        list(iter_table_chunks(write(tmp_path / "data.json", '"just a string"'), 1))


def test_detect_text_column_needs_no_label_column():
    assert detect_text_column(pd.DataFrame({"notes": ["a"]})) == "notes"
    assert detect_text_column(pd.DataFrame({"id": [1], "sentence": ["a b"], "label": ["x"]})) == "sentence"
    with pytest.raises(DataError, match="'body' is not in the table"):
        detect_text_column(pd.DataFrame({"notes": ["a"]}), "body")


# ---------------------------------------------------------------------------------------------
# File errors
# ---------------------------------------------------------------------------------------------

def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"data.csv: the file is empty\. Upload a table with a header row"):
        read_table(write(tmp_path / "data.csv", b""))


def test_whitespace_only_file(tmp_path):
    with pytest.raises(DataError, match="the file is empty"):
        read_table(write(tmp_path / "data.csv", "  \n\n \n"))


@pytest.mark.parametrize("name, content", [
    ("data.csv", "text,label\n"), ("data.tsv", "text\tlabel\n"), ("data.json", "[]"),
])
def test_header_only_file(tmp_path, name, content):
    with pytest.raises(DataError) as info:
        read_table(write(tmp_path / name, content))
    assert f"{name}: no data rows found" in str(info.value) and "Add labelled rows" in str(info.value)


def test_header_only_xlsx(tmp_path):
    path = tmp_path / "data.xlsx"
    pd.DataFrame(columns=["text", "label"]).to_excel(path, index=False)
    with pytest.raises(DataError, match="no data rows found"):
        read_table(path)


@pytest.mark.parametrize("name", ["data.docx", "data.xls", "data"])
def test_unsupported_extension_lists_the_supported_ones(tmp_path, name):
    path = write(tmp_path / name, "text,label\na,b\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    message = str(info.value)
    assert f"{name}: unsupported file type" in message
    assert all(ext in message for ext in SUPPORTED_EXTENSIONS)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",  # an image
                                     b"PK\x03\x04\x14\x00\x00\x00\x08\x00"])  # a zip (e.g. .xlsx)
def test_binary_file_named_csv(tmp_path, content):
    with pytest.raises(DataError, match=r"data.csv: looks like a binary file, not a text table\. Export it as CSV"):
        read_table(write(tmp_path / "data.csv", content))


def test_text_file_named_xlsx(tmp_path):
    with pytest.raises(DataError, match=r"data.xlsx: could not be read as a XLSX table \("):
        read_table(write(tmp_path / "data.xlsx", "text,label\na,b\n"))


def test_broken_json(tmp_path):
    with pytest.raises(DataError, match=r"data.json: could not be read as a JSON table"):
        read_table(write(tmp_path / "data.json", "{not json"))


# ---------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("columns", [("text", "label"), ("Review", "Sentiment"), ("label", "sentence"),
                                     ("id", "message", "category"), ("TWEET", "target", "user")])
def test_columns_detected_by_name(columns):
    frame = pd.DataFrame({c: ["a", "b"] for c in columns})
    text, label = detect_columns(frame)
    lowered = [c.lower() for c in columns]
    assert text.lower() in ("text", "review", "sentence", "message", "tweet")
    assert label.lower() in ("label", "sentiment", "category", "target")
    assert text in columns and label in columns and lowered.index(text.lower()) != lowered.index(label.lower())


def test_columns_detected_by_content_when_names_say_nothing():
    frame = pd.DataFrame({
        "c1": ["x", "y", "x", "y", "x"],
        "c2": ["a long review of the film", "another long text here", "more words in this one",
               "and a fourth fairly long one", "the fifth and last"],
        "c3": ["1", "2", "3", "4", "5"],
    })
    assert detect_columns(frame) == ("c2", "c1")


def test_label_found_by_name_is_not_taken_as_the_text_by_length():
    # Short texts, long class names: the label column is found by its name first.
    frame = pd.DataFrame({"phrase": ["hi", "bye", "yo", "ciao"],
                          "intent": ["greeting_hello", "farewell_goodbye", "greeting_hello", "farewell_goodbye"]})
    assert detect_columns(frame) == ("phrase", "intent")


def test_given_columns_are_used():
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"], "body": ["long text", "more"], "y2": [1, 0]})
    assert detect_columns(frame, text_column="body", label_column="y2") == ("body", "y2")
    assert detect_columns(frame, text_column="body") == ("body", "label")


@pytest.mark.parametrize("kwargs, role, name", [({"text_column": "review"}, "text", "review"),
                                                ({"label_column": "stars"}, "label", "stars")])
def test_missing_given_column_lists_the_columns_found(tmp_path, kwargs, role, name):
    path = write(tmp_path / "data.csv", "text,label,extra\nhi,a,1\nho,b,2\n")
    with pytest.raises(DataError) as info:
        load_table(path, **kwargs)
    message = str(info.value)
    assert f"data.csv: The {role} column '{name}' is not in the table" in message
    assert "Columns found: 'text', 'label', 'extra'" in message


def test_single_column_table(tmp_path):
    with pytest.raises(DataError) as info:
        load_table(write(tmp_path / "data.csv", "text\nhello world\nbye now\n"))
    message = str(info.value)
    assert "data.csv" in message and "one column ('text')" in message and "label column" in message


@pytest.mark.parametrize("content", ["a,b\n0,0\n1,1\n0,1\n", "x,y,z\n1,2,3\n-4,5e3,.5\n"])
def test_a_table_of_numbers_has_no_text_column(tmp_path, content):
    path = write(tmp_path / "numbers.csv", content)
    with pytest.raises(DataError) as info:
        load_table(path)
    message = str(info.value)
    assert message.startswith("numbers.csv: No column holds text:") and "only numbers" in message
    assert "--text-column" in message and "text_column=" in message


def test_numbers_are_texts_when_the_column_is_named(tmp_path):
    table = load_table(write(tmp_path / "numbers.csv", "a,b\n0,0\n1,1\n0,1\n"), text_column="a")
    assert (table.text_column, table.label_column, table.texts) == ("a", "b", ["0", "1", "0"])
    # A header that says "text" names it too, when no column holds words.
    table = load_table(write(tmp_path / "scores.csv", "text,label\n1.5,x\n2,y\n"))
    assert (table.text_column, table.texts) == ("text", ["1.5", "2"])


def test_a_column_of_numbers_is_never_guessed_as_the_texts():
    # Longer than the texts, and even named "text": the numbers are a score, the words the texts.
    frame = pd.DataFrame({"text": ["123456789", "987654321"], "words": ["hi", "yo"], "label": ["a", "b"]})
    assert detect_columns(frame) == ("words", "label")
    with pytest.raises(DataError, match="No column holds text"):
        detect_text_column(pd.DataFrame({"score": [0.5, 1.0, None]}))
    assert detect_text_column(pd.DataFrame({"score": [0.5, 1.0]}), "score") == "score"
    assert detect_text_column(pd.DataFrame({"notes": ["3 cats", "4"]})) == "notes"


def test_same_column_for_text_and_label():
    with pytest.raises(DataError, match="must differ"):
        detect_columns(pd.DataFrame({"text": ["a"], "label": ["b"]}), text_column="text", label_column="text")


# ---------------------------------------------------------------------------------------------
# Validation of texts and labels
# ---------------------------------------------------------------------------------------------

def test_empty_and_whitespace_texts_name_their_rows(tmp_path):
    content = "text,label\nfine,a\n,b\n   ,a\nok,b\n\t,a\n"
    with pytest.raises(DataError) as info:
        load_table(write(tmp_path / "data.csv", content))
    message = str(info.value)
    assert "data.csv" in message
    assert "3 empty text(s): row 2, 3, 5" in message
    assert "Fill them in or delete those rows" in message


def test_many_empty_texts_are_summarised():
    with pytest.raises(DataError, match=r"8 empty text\(s\): row 1, 2, 3, 4, 5 and 3 more"):
        validate_texts([""] * 8)


@pytest.mark.parametrize("value", [None, math.nan, "", "  "])
def test_validate_texts_blank_values(value):
    with pytest.raises(DataError, match="row 2"):
        validate_texts(["ok", value])


def test_validate_texts_converts_to_str():
    assert validate_texts(["a", 3, 4.5]) == ["a", "3", "4.5"]


def test_validate_texts_counts_rows_from_first_row():  # a chunk of a file that starts at row 11
    with pytest.raises(DataError, match=r"1 empty text\(s\): row 12\."):
        validate_texts(["a", " ", "b"], first_row=11)


def test_missing_labels_name_their_rows(tmp_path):
    content = "text,label\none,a\ntwo,\nthree,b\nfour,  \n"
    with pytest.raises(DataError) as info:
        load_table(write(tmp_path / "data.csv", content))
    message = str(info.value)
    assert "2 label(s) cannot be used" in message
    assert "row 2 (missing label)" in message and "row 4 (empty label)" in message
    assert "Give every row a class label" in message


def test_nan_labels_in_numeric_column():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": [1.0, np.nan, 0.0]})
    with pytest.raises(DataError, match=r"row 2 \(missing label\)"):
        table_to_labelled(frame)


def test_single_class(tmp_path):
    with pytest.raises(DataError) as info:
        load_table(write(tmp_path / "data.csv", "text,label\na,spam\nb,spam\nc, spam \n"))
    message = str(info.value)
    assert "single class ('spam')" in message and "at least 2" in message and "Add examples" in message


def test_mismatched_lengths():
    with pytest.raises(DataError, match="has 3 texts but 2 labels; give one label per text"):
        validate_texts_and_labels(["a", "b", "c"], ["x", "y"])


def test_no_texts_at_all():
    with pytest.raises(DataError, match="is empty"):
        validate_texts_and_labels([], [])
    with pytest.raises(DataError, match="is missing"):
        validate_texts_and_labels(None, ["a"])


@pytest.mark.parametrize("labels", [[0.5, 1.0, 0.0], ["0.5", "1", "0"], ["2.75", "1.5", "3"]])
def test_decimal_labels(labels):
    with pytest.raises(DataError) as info:
        validate_texts_and_labels(["a", "b", "c"], labels)
    message = str(info.value)
    assert "row 1" in message and "not a class label" in message and "regression" in message


def test_decimal_labels_from_csv_are_a_regression_target_unless_classes_are_asked_for(tmp_path):
    path = write(tmp_path / "data.csv", "text,label\na,0.5\nb,1.5\nc,1\n")
    table = load_table(path)
    assert table.task.task == "regression" and "fractions" in table.task.reason
    assert table.labels == [0.5, 1.5, 1.0] and table.class_counts == {}
    with pytest.raises(DataError, match=r"row 1 \(0\.5 is not a class label"):
        load_table(path, task="single_label")


def test_whole_number_floats_are_integer_labels(tmp_path):
    table = load_table(write(tmp_path / "data.csv", "text,label\na,1.0\nb,0\nc,2.0\n"))
    assert table.labels == [1, 0, 2]


def test_validate_min_classes_one_allows_a_single_class():
    texts, labels = validate_texts_and_labels(["a", "b"], ["x", "x"], min_classes=1)
    assert labels == ["x", "x"]


def test_too_many_distinct_labels_warns():
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(60)], "label": [f"c{i}" for i in range(60)]})
    table = table_to_labelled(frame)
    assert len(table.warnings) == 1 and "60 distinct labels for 60 rows" in table.warnings[0]
    assert not table_to_labelled(frame_of_rows()).warnings


def test_labels_differing_only_by_case_warn():
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["Spam", "spam", "ham", "spam"]})
    table = table_to_labelled(frame)
    assert table.labels == ["Spam", "spam", "ham", "spam"]  # kept as given: different classes
    assert any("differ only by upper/lower case" in w and "'Spam' / 'spam'" in w for w in table.warnings)


def test_very_long_texts_warn_with_the_row():
    from finetuner.data import LONG_TEXT_CHARS
    frame = pd.DataFrame({"text": ["short", "x" * (LONG_TEXT_CHARS + 1), "also short"], "label": ["a", "b", "a"]})
    table = table_to_labelled(frame)
    assert table.texts[1] == "x" * (LONG_TEXT_CHARS + 1)  # kept, not cut
    assert any("1 text(s) are longer than" in w and "row 2" in w for w in table.warnings)


def test_empty_frame():
    with pytest.raises(DataError, match="no rows"):
        table_to_labelled(pd.DataFrame({"text": [], "label": []}))


def test_labelled_texts_helpers():
    table = LabelledTexts(["a", "b", "c"], ["y", "x", "y"], "body", "cls")
    assert len(table) == 3
    assert table.class_counts == {"x": 1, "y": 2}
    frame = table.to_frame()
    assert list(frame.columns) == ["body", "cls"] and frame["cls"].tolist() == ["y", "x", "y"]


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (3, 3), ("3", 3), (" 3 ", 3), (3.0, 3), ("3.0", 3), (np.int64(3), 3), (True, 1),
    (" positive ", "positive"), ("Spam", "Spam"), ("-1", -1),
])
def test_normalize_label(value, expected):
    result = normalize_label(value)
    assert result == expected and type(result) is type(expected)


def test_normalize_labels_mixed_types_become_strings():
    assert normalize_labels([1, "a", "2"]) == ["1", "a", "2"]


def test_label_map_ints_keep_numeric_order():
    label_map = LabelMap.from_labels([10, 2, 1, 2, 10])
    assert label_map.values == (1, 2, 10)  # not "1", "10", "2"
    assert label_map.is_int and len(label_map) == 3
    assert label_map.id2label == {0: "1", 1: "2", 2: "10"}
    assert label_map.label2id == {"1": 0, "2": 1, "10": 2}


def test_label_map_strings_sort():
    label_map = LabelMap.from_labels(["spam", "ham", "eggs", "ham"])
    assert label_map.values == ("eggs", "ham", "spam") and not label_map.is_int
    assert label_map.names == ["eggs", "ham", "spam"]


def test_label_map_string_and_int_forms_are_one_class():
    label_map = LabelMap.from_labels(["1", 1, " 1 ", 0, "0"])
    assert label_map.values == (0, 1)
    assert label_map.encode([1, "1", " 1", "0"]) == [1, 1, 1, 0]


def test_label_map_whitespace_is_stripped():
    label_map = LabelMap.from_labels([" positive", "positive ", "negative"])
    assert label_map.values == ("negative", "positive")
    assert label_map.encode(["  positive  "]) == [1]


def test_label_map_num_labels_fills_the_range():
    assert LabelMap.from_labels([0, 1], num_labels=3).values == (0, 1, 2)
    # Labels outside 0..n-1 keep their own values.
    assert LabelMap.from_labels([3, 7], num_labels=2).values == (3, 7)


@pytest.mark.parametrize("labels", [[3, 7, 7, 3], ["b", "a", "c"], [0, 1, 2, 1]])
def test_label_map_round_trip(labels):
    label_map = LabelMap.from_labels(labels)
    ids = label_map.encode(labels)
    assert all(0 <= i < len(label_map) for i in ids)
    assert label_map.decode(ids) == labels
    assert label_map.decode(np.array(ids)) == labels


def test_label_map_unknown_label_names_the_row():
    label_map = LabelMap.from_labels(["negative", "positive"])
    with pytest.raises(DataError) as info:
        label_map.encode(["positive", "negative", "neutral"])
    message = str(info.value)
    assert "Row 3: label 'neutral' is not one of the model's classes ('negative', 'positive')" in message


def test_label_map_bad_label_in_from_labels():
    with pytest.raises(DataError, match=r"row 2 \(missing label\)"):
        LabelMap.from_labels(["a", None])


# ---------------------------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------------------------

def test_split_is_stratified():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    texts = [f"text {i}" for i in range(100)]
    train_t, train_l, eval_t, eval_l, warnings = split_train_eval(texts, labels, eval_fraction=0.2, seed=1)
    assert warnings == []
    assert len(eval_t) == 20 and len(train_t) == 80
    assert Counter(eval_l) == {"a": 10, "b": 6, "c": 4}
    assert Counter(train_l) == {"a": 40, "b": 24, "c": 16}
    # A partition of the input, texts still paired with their labels.
    assert sorted(train_t + eval_t) == sorted(texts)
    pairs = dict(zip(texts, labels))
    assert all(pairs[t] == l for t, l in zip(train_t + eval_t, train_l + eval_l))


def test_split_each_class_in_both_parts_on_small_data():
    labels = [0, 1, 2] * 4  # 12 rows, 3 classes: eval share 0.25 -> 3 rows
    texts = [f"t{i}" for i in range(12)]
    _, train_l, _, eval_l, warnings = split_train_eval(texts, labels, eval_fraction=0.25)
    assert warnings == []
    assert set(train_l) == set(eval_l) == {0, 1, 2}


def test_split_singletons_go_to_training_with_a_warning():
    labels = ["a"] * 10 + ["b"] * 10 + ["rare"]
    texts = [f"t{i}" for i in range(21)]
    train_t, train_l, eval_t, eval_l, warnings = split_train_eval(texts, labels, eval_fraction=0.2)
    assert "rare" in train_l and "rare" not in eval_l
    assert "t20" in train_t
    assert len(warnings) == 1
    assert "1 class(es) have a single example ('rare')" in warnings[0] and "training only" in warnings[0]


def test_split_falls_back_to_random_when_eval_is_too_small():
    labels = ["a", "b", "c", "d"] * 2  # 8 rows, 4 classes, eval share 0.2 -> 2 rows
    texts = [f"t{i}" for i in range(8)]
    train_t, _, eval_t, _, warnings = split_train_eval(texts, labels, eval_fraction=0.2)
    assert len(eval_t) == 2 and len(train_t) == 6
    assert len(warnings) == 1
    assert "cannot hold all 4 classes" in warnings[0] and "random split" in warnings[0]


def test_split_is_deterministic_per_seed():
    labels = ["a", "b"] * 25
    texts = [f"t{i}" for i in range(50)]
    first = split_train_eval(texts, labels, seed=3)
    assert split_train_eval(texts, labels, seed=3) == first
    assert split_train_eval(texts, labels, seed=4)[2] != first[2]


def test_split_too_few_rows():
    with pytest.raises(DataError, match="Too few rows"):
        split_train_eval(["a", "b", "c"], ["x", "y", "z"])


def test_an_id_column_is_not_taken_for_the_label_and_unique_labels_warn(tmp_path):
    from finetuner.data import detect_columns, table_to_labelled
    frame = pd.DataFrame({"row_id": ["1", "2", "3", "4", "5", "6"], "opinion": list("aabbab"),
                          "comment_body": ["long text here"] * 6})
    assert detect_columns(frame) == ("comment_body", "opinion")
    unique = pd.DataFrame({"text": [f"text {i}" for i in range(6)], "label": [f"x{i}" for i in range(6)]})
    assert any("not an ID" in warning for warning in table_to_labelled(unique).warnings)
