"""``finetuner check``: summary, flagged rows written formula-safe, leakage with --eval, exit codes for bad input."""

from __future__ import annotations

import contextlib
import io

import pandas as pd
import pytest
from topic_data import topic_data

from finetuner.cli import main
from finetuner.label_issues import ISSUE_COLUMNS

FLIPPED_ROW = 7  # a cooking text labelled weather


def run_cli(*argv):
    """(exit code, stdout, stderr) of ``finetuner.cli.main`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    texts, labels = topic_data(15)
    assert labels[FLIPPED_ROW] == "cooking"
    labels[FLIPPED_ROW] = "weather"
    texts[10] = "=" + texts[10]  # a formula-looking text
    texts.append(texts[0].upper())  # an exact duplicate (row 45)
    labels.append(labels[0])
    train = root / "train.csv"
    pd.DataFrame({"review": texts, "topic": labels}).to_csv(train, index=False)
    evaluation = root / "eval.csv"
    pd.DataFrame({"review": [texts[3], "The coach celebrated after the cup final!"],
                  "topic": ["sports", "sports"]}).to_csv(evaluation, index=False)
    return root, train, evaluation


def test_check_prints_a_summary_and_writes_the_flagged_rows(files):
    root, train, evaluation = files
    output = root / "out" / "issues.csv"
    code, out, err = run_cli("check", "--data", train, "--eval", evaluation, "--output", output)
    assert code == 0, err
    assert "train.csv: 46 rows, 3 classes (text column 'review', label column 'topic')" in out
    assert "Label issues: " in out and "Duplicates within train.csv: 1 exact" in out
    assert "Leakage into eval.csv: 1 of 2 evaluation texts also in train.csv" in out
    issues = pd.read_csv(output)
    assert tuple(issues.columns) == ISSUE_COLUMNS
    top = issues.iloc[0]
    assert (top["row"], top["given_label"], top["suggested_label"]) == (FLIPPED_ROW, "weather", "cooking")
    assert issues["score"].is_monotonic_decreasing
    assert "Wrote" in err and str(output) in err


def test_without_output_the_most_suspicious_rows_are_shown(files):
    _, train, _ = files
    code, out, _ = run_cli("check", "--data", train, "--text-column", "review", "--label-column", "topic", "-q")
    assert code == 0
    assert f"  row {FLIPPED_ROW}: 'weather' -> 'cooking'" in out and "Leakage" not in out


def test_formula_cells_are_neutralised(files, tmp_path):
    _, train, _ = files
    table = pd.read_csv(train)
    table.loc[10, "topic"] = "weather"  # the "=..." cooking text, mislabelled: it is flagged and written
    data = tmp_path / "formula.csv"
    table.to_csv(data, index=False)
    code, _, err = run_cli("check", "--data", data, "--output", tmp_path / "issues.csv", "-q")
    assert code == 0, err
    issues = pd.read_csv(tmp_path / "issues.csv")
    assert issues.loc[issues["row"] == 10, "text"].iloc[0].startswith("'=")


@pytest.mark.parametrize("argv, message", [
    (["check", "--data", "{tmp}/missing.csv"], "missing.csv: file not found"),
    (["check", "--data", "{train}", "--label-column", "nope"], "label column 'nope' is not in the table"),
    (["check", "--data", "{train}", "--output", "{tmp}/issues.xlsx"], "--output must be a .csv file"),
    (["check", "--data", "{single}"], "single example ('rare')"),
    (["check", "--data", "{train}", "--folds", "1"], "--folds must be at least 2"),
    (["check", "--data", "{train}", "--threshold", "1.5"], "--threshold must be above 0 and at most 1"),
    (["check"], "required: --data"),
])
def test_bad_input_exits_2_with_one_line(argv, message, files, tmp_path):
    _, train, _ = files
    table = pd.read_csv(train)
    table.loc[0, "topic"] = "rare"
    table.to_csv(tmp_path / "single.csv", index=False)
    code, out, err = run_cli(*[a.format(tmp=tmp_path, train=train, single=tmp_path / "single.csv") for a in argv])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err


def test_check_is_listed_in_the_help():
    code, out, _ = run_cli("--help")
    assert code == 0 and "check" in out


def test_several_labels_per_text_are_checked_and_numbers_say_the_check_does_not_apply(tmp_path):
    from test_label_issues import MULTI_FLIPPED, _topic_sets

    texts, sets = _topic_sets(150)
    for row, wrong in MULTI_FLIPPED.items():
        sets[row] = wrong
    multi = tmp_path / "multi.csv"
    pd.DataFrame({"text": texts, "topics": sets}).to_csv(multi, index=False)
    code, out, err = run_cli("check", "--data", multi, "--output", tmp_path / "issues.csv")
    assert code == 0, err
    assert "150 rows, 3 labels, several per text (separator ';')" in out
    issues = pd.read_csv(tmp_path / "issues.csv")
    assert set(issues["row"].head(2)) == set(MULTI_FLIPPED)
    numbers = tmp_path / "numbers.csv"
    pd.DataFrame({"text": texts[:40] + texts[:1], "score": [1 + 0.1 * i for i in range(41)]}).to_csv(numbers,
                                                                                                     index=False)
    code, out, err = run_cli("check", "--data", numbers, "--output", tmp_path / "none.csv")
    assert code == 0, err
    assert "41 rows, a number per text (regression)" in out
    assert "Label issues: not checked. Checking labels applies to class labels" in out
    assert "Duplicates within numbers.csv: 1 exact" in out  # the other checks still run
    assert "Nothing written" in err and not (tmp_path / "none.csv").exists()
    code, _, err = run_cli("check", "--data", numbers, "--task", "single_label", "-q")
    assert code == 2 and "is not a class label (decimal numbers look like a regression target)" in err
