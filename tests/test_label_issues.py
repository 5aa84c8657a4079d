"""Label issues: flipped labels come out on top with the right suggestion; columns, rows, scores and bad input."""

from __future__ import annotations

import pandas as pd
import pytest
from topic_data import TOPICS, topic_data

from finetuner.errors import DataError
from finetuner.label_issues import ISSUE_COLUMNS, find_label_issues, summarize_label_issues

FLIPPED = {4: "weather", 31: "sports"}  # row -> wrong label (row 4 is cooking, row 31 cooking too)


@pytest.fixture(scope="module")
def flipped_table() -> pd.DataFrame:
    texts, labels = topic_data(20)
    assert all(labels[row] == "cooking" for row in FLIPPED)
    for row, wrong in FLIPPED.items():
        labels[row] = wrong
    # A non-default index: ``row`` must be the position in the table, not the index label.
    return pd.DataFrame({"id": range(100, 160), "sentence": texts, "category": labels}, index=range(500, 560))


@pytest.fixture(scope="module")
def issues(flipped_table) -> pd.DataFrame:
    return find_label_issues(flipped_table)  # columns detected: sentence / category


def test_flipped_labels_are_the_most_suspicious_rows(issues, flipped_table):
    assert tuple(issues.columns) == ISSUE_COLUMNS
    top = issues.head(len(FLIPPED))
    assert set(top["row"]) == set(FLIPPED)
    for item in top.itertuples():
        assert item.given_label == FLIPPED[item.row] and item.suggested_label == "cooking"
        assert item.text == flipped_table["sentence"].iloc[item.row]
    assert len(issues) < 10  # the clean rows are not flagged wholesale


def test_scores_are_in_0_1_and_most_suspicious_first(issues):
    scores = issues["score"].tolist()
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.5  # the models give the wrong label little probability


def test_integer_labels_come_back_as_integers_and_small_classes_lower_the_folds():
    texts, labels = topic_data(3)  # 3 examples per class: 5 folds become 3
    ids = {"sports": 0, "cooking": 1, "weather": 2}
    table = pd.DataFrame({"text": texts, "label": [ids[label] for label in labels]})
    table.loc[0, "label"] = 2
    result = find_label_issues(table, "text", "label", folds=5)
    assert tuple(result.columns) == ISSUE_COLUMNS
    assert all(isinstance(v, int) for v in result["given_label"]) and all(
        isinstance(v, int) for v in result["suggested_label"])


def test_summary_line():
    assert summarize_label_issues(pd.DataFrame(columns=list(ISSUE_COLUMNS)), 40) == \
        "No likely label errors among 40 rows."
    table = pd.DataFrame({"row": [7], "text": ["x"], "given_label": ["a"], "suggested_label": ["b"], "score": [0.9]})
    line = summarize_label_issues(table, 40)
    assert "**1** of 40 rows (2.5%)" in line and "row 7" in line and "`a`" in line and "`b`" in line


@pytest.mark.parametrize("change, message", [
    (lambda t: t.assign(text=["  "] + t["text"].tolist()[1:]), "1 empty text(s): row 1"),
    (lambda t: t.assign(label=t["label"].tolist()[:-1] + [None]), "row 15 (missing label)"),
    (lambda t: t.assign(label=["rare"] + t["label"].tolist()[1:]), "single example ('rare')"),
    (lambda t: t.assign(label="sports"), "single class"),
    (lambda t: t.rename(columns={"text": "body"}), "text column 'text' is not in the table"),
])
def test_bad_input_is_a_data_error_that_says_where(change, message):
    texts, labels = topic_data(5)
    table = change(pd.DataFrame({"text": texts, "label": labels}))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        find_label_issues(table, "text", "label")


def test_one_fold_is_refused():
    texts, labels = topic_data(5)
    with pytest.raises(DataError, match="folds must be at least 2"):
        find_label_issues(pd.DataFrame({"text": texts, "label": labels}), folds=1)


# ------------------------------------------------------------------------------------ several labels, numbers

MULTI_FLIPPED = {5: "sports", 22: "cooking;sports;weather"}  # row -> wrong label set


def _topic_sets(n: int = 80):
    """Texts of one or two topics (a sentence each), and their label sets joined by ';'."""
    texts, labels = topic_data(80)
    combos = [("sports",), ("cooking",), ("weather",), ("cooking", "sports"), ("sports", "weather"),
              ("cooking", "weather")]
    by_topic = {topic: [t for t, label in zip(texts, labels) if label == topic] for topic in TOPICS}
    rows, sets = [], []
    for i in range(n):
        combo = combos[i % len(combos)]
        rows.append(" ".join(by_topic[topic][(i * 7 + j * 31) % 80] for j, topic in enumerate(combo)))
        sets.append(";".join(combo))
    return rows, sets


def test_several_labels_per_text_flag_the_rows_whose_label_set_is_wrong():
    texts, sets = _topic_sets(150)
    truth = {row: sets[row] for row in MULTI_FLIPPED}
    assert truth == {5: "cooking;weather", 22: "sports;weather"}
    for row, wrong in MULTI_FLIPPED.items():
        sets[row] = wrong
    issues = find_label_issues(pd.DataFrame({"text": texts, "topics": sets}))
    assert tuple(issues.columns) == ISSUE_COLUMNS
    top = issues.head(len(MULTI_FLIPPED))
    assert set(top["row"]) == set(MULTI_FLIPPED), issues.head()
    for item in top.itertuples():
        assert item.given_label == MULTI_FLIPPED[item.row] and item.suggested_label == truth[item.row]
    assert len(issues) < 10
    assert issues["score"].between(0, 1).all() and issues["score"].is_monotonic_decreasing


def test_label_sets_that_cannot_be_checked_and_numbers_say_so():
    texts, sets = _topic_sets(12)
    with pytest.raises(DataError, match=r"label\(s\) of column 'topics' are on a single row \('rare'\)"):
        find_label_issues(pd.DataFrame({"text": texts, "topics": sets[:-1] + ["sports;rare"]}), task="multi_label")
    with pytest.raises(DataError, match="are on \\(nearly\\) every row \\('news'\\)"):
        find_label_issues(pd.DataFrame({"text": texts, "topics": [s + ";news" for s in sets]}))
    with pytest.raises(DataError, match="mixes ';' with ','"):
        find_label_issues(pd.DataFrame({"text": texts, "topics": sets[:-1] + ["sports;cooking,weather"]}))
    scores = [1.5 + 0.1 * i for i in range(len(texts))]
    with pytest.raises(DataError, match="Checking labels applies to class labels .* 'score' holds numbers"):
        find_label_issues(pd.DataFrame({"text": texts, "score": scores}))
    with pytest.raises(DataError, match="holds numbers"):  # asked for
        find_label_issues(pd.DataFrame({"text": texts, "label": sets}), task="regression")
