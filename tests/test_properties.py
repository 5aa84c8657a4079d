"""Property-based tests (hypothesis) of the table reader and the label mapping."""

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetuner.data import LabelMap, load_table, normalize_labels

# Texts with anything a spreadsheet export may hold: quotes, delimiters, newlines, unicode, formulas.
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00")
    | st.sampled_from(list(',;|\t"\'\n=+-@')),
    min_size=1, max_size=40,
).filter(lambda t: t.strip() != "")
LABEL_NAMES = st.sampled_from(["positive", "negative", "neutral", "spam", "ham", "Sci/Tech", "a,b", 'q"uote'])
ROWS = st.lists(st.tuples(TEXT, LABEL_NAMES), min_size=2, max_size=30).filter(
    lambda rows: len({label for _, label in rows}) >= 2)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(rows=ROWS, fmt=st.sampled_from(["csv", "tsv", "jsonl", "parquet"]))
def test_a_written_table_reads_back_unchanged(tmp_path, rows, fmt):
    frame = pd.DataFrame(rows, columns=["text", "label"])
    path = tmp_path / f"table.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path)
    table = load_table(path)
    assert table.texts == [str(t) for t, _ in rows]
    assert table.labels == [label for _, label in rows]


@given(labels=st.lists(st.one_of(st.integers(-5, 50), st.integers(0, 9).map(str), LABEL_NAMES), min_size=1))
def test_label_map_round_trips_and_ignores_order(labels):
    label_map = LabelMap.from_labels(labels)
    normalized = normalize_labels(labels)
    assert label_map.decode(label_map.encode(labels)) == normalized
    assert LabelMap.from_labels(list(reversed(labels))) == label_map
    assert len(label_map) == len(set(normalized))
    assert sorted(label_map.label2id.values()) == list(range(len(label_map)))


@given(values=st.lists(st.integers(0, 20), min_size=1))
def test_integer_labels_written_as_text_are_the_same_classes(values):
    assert normalize_labels([str(v) for v in values]) == normalize_labels(values) == values
