"""Duplicates: exact and near, within training and across train/eval, normalisation, chunking, the fast path."""

from __future__ import annotations

import pytest
from topic_data import topic_data

import finetuner.duplicates as duplicates
from finetuner.duplicates import DUPLICATE_COLUMNS, KINDS, find_duplicates, normalize_text
from finetuner.errors import DataError

TRAIN = [
    "The striker scored twice in the cup final.",       # 0
    "My grandmother baked a chocolate cake.",            # 1
    "  THE striker scored twice in the   cup final!!",  # 2: exact duplicate of 0
    "My grandma baked a chocolate cake.",                # 3: near duplicate of 1 (cosine 0.975)
    "A heavy storm hit the coast tonight.",              # 4
    "The striker scored twice in the cup final.",        # 5: exact duplicate of 0
]
EVAL = [
    "a heavy storm hit the coast tonight",               # 0: exact, train row 4
    "The chef served a garlic soup.",                    # 1: unrelated
    "My grandmother baked the chocolate cake.",          # 2: near train row 1
]


@pytest.mark.parametrize("text, normalized", [
    ("  Hello,   WORLD!! ", "hello, world"),
    ("«Quoted\t\ttext…»", "quoted text"),
    ("ＦＵＬＬ　ｗｉｄｔｈ", "full width"),     # NFKC
    ("Straße", "strasse"),                      # casefold
    ("!!!", "!!!"),                              # only punctuation: kept
    ("$5 off", "$5 off"),                        # symbols are not punctuation
])
def test_normalisation(text, normalized):
    assert normalize_text(text) == normalized


@pytest.fixture(scope="module")
def report():
    return find_duplicates(TRAIN, EVAL, threshold=0.95)


def test_exact_and_near_within_and_across(report):
    frame = report.to_frame()
    assert tuple(frame.columns) == DUPLICATE_COLUMNS
    found = {(k, r, o) for k, r, o in frame[["kind", "row", "other_row"]].itertuples(index=False)}
    assert found == {("exact within train", 2, 0), ("exact within train", 5, 0), ("near within train", 3, 1),
                     ("exact train/eval", 4, 0), ("near train/eval", 1, 2)}
    assert list(frame["kind"]) == sorted(frame["kind"], key=KINDS.index)  # grouped in KINDS order
    near = frame[frame["kind"] == "near within train"].iloc[0]
    assert 0.95 <= near["similarity"] < 1.0 and near["text"] == TRAIN[3] and near["other_text"] == TRAIN[1]
    leak = frame[frame["kind"] == "exact train/eval"].iloc[0]
    assert leak["similarity"] == 1.0 and leak["text"] == TRAIN[4] and leak["other_text"] == EVAL[0]
    assert report.counts() == {"exact within train": 2, "near within train": 1, "exact train/eval": 1,
                               "near train/eval": 1}


def test_summary_line(report):
    line = report.summary()
    assert "2 exact duplicate(s) within training" in line and "1 near-duplicate(s)" in line
    assert "1 evaluation text(s) also in training (leakage" in line and "similarity ≥ 0.95" in line
    clean = find_duplicates(["one text", "another text"], ["a third"], near=False)
    assert clean.summary() == "**Duplicates:** none found and no evaluation text in training."
    assert set(clean.counts()) == set(KINDS) and not any(clean.counts().values())
    assert clean.to_frame().empty and tuple(clean.to_frame().columns) == DUPLICATE_COLUMNS


def test_a_higher_threshold_keeps_only_exact_duplicates():
    counts = find_duplicates(TRAIN, EVAL, threshold=0.999).counts()
    assert counts == {"exact within train": 2, "near within train": 0, "exact train/eval": 1, "near train/eval": 0}


def test_exact_duplicates_need_no_embeddings(monkeypatch):
    def no_embedding(*args, **kwargs):
        raise AssertionError("embed() called")

    monkeypatch.setattr(duplicates, "embed", no_embedding)
    assert find_duplicates(TRAIN, EVAL, near=False).counts() == {
        "exact within train": 2, "near within train": 0, "exact train/eval": 1, "near train/eval": 0}


def test_chunked_similarities_equal_unchunked():
    texts, _ = topic_data(12)
    texts += [t.replace(".", " today.") for t in texts[:10]] + texts[5:8]  # near and exact repeats
    whole = find_duplicates(texts, texts[20:30] + ["Thick fog hit the coast tonight."], threshold=0.9,
                            chunk_rows=10_000).to_frame()
    assert (whole["kind"] == "near within train").sum() >= 5 and (whole["kind"] == "exact within train").sum() == 3
    for chunk_rows in (1, 7):
        chunked = find_duplicates(texts, texts[20:30] + ["Thick fog hit the coast tonight."], threshold=0.9,
                                  chunk_rows=chunk_rows).to_frame()
        assert chunked[["kind", "row", "other_row"]].equals(whole[["kind", "row", "other_row"]])
        assert chunked["similarity"].round(4).equals(whole["similarity"].round(4))


def test_given_embeddings_give_the_same_result():
    from finetuner.embeddings import embed
    given = find_duplicates(TRAIN, EVAL, train_embeddings=embed(TRAIN)).pairs
    computed = find_duplicates(TRAIN, EVAL).pairs
    # The same pairs; a score may differ in its last float digits (texts embedded in other batches: on AMD EPYC
    # 0.974768 against 0.974769).
    assert [pair[:3] for pair in given] == [pair[:3] for pair in computed]
    assert [pair[3] for pair in given] == pytest.approx([pair[3] for pair in computed], abs=1e-5)


@pytest.mark.parametrize("train, kwargs, message", [
    (["fine", "  "], {}, "training texts has 1 empty text"),
    (["fine"], {"threshold": 0.0}, "threshold must be in"),
    (["fine"], {"threshold": 1.5}, "threshold must be in"),
])
def test_bad_input(train, kwargs, message):
    with pytest.raises(DataError, match=message):
        find_duplicates(train, **kwargs)
    with pytest.raises(DataError, match="evaluation texts has 1 empty text\\(s\\): row 2"):
        find_duplicates(["fine"], ["ok", None])
