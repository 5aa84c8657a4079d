"""Every file of the bad-input corpus is either read correctly or rejected with a specific DataError."""

import pytest

from finetuner import DataError, load_table
from finetuner.data import Limits

from bad_inputs import CASES


@pytest.mark.parametrize("name, write, expectation", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_handled_or_rejected_clearly(tmp_path, name, write, expectation):
    path = write(tmp_path)
    kind, detail = expectation
    if kind == "error":
        with pytest.raises(DataError) as caught:
            load_table(path)
        message = str(caught.value)
        assert path.name in message, message  # says which file
        for word in detail:
            assert word.lower() in message.lower(), message
        assert "Traceback" not in message and len(message) < 600
    else:
        table = load_table(path)
        assert detail(table), (table.texts[:3], table.labels[:3], table.warnings)


def test_missing_named_column_lists_the_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("sentence,category\na,b\nc,d\n")
    with pytest.raises(DataError, match=r"'text'.*not in the table.*'sentence', 'category'"):
        load_table(path, text_column="text")


def test_limits_reject_large_files_and_many_rows_with_the_setting_to_change(tmp_path, monkeypatch):
    path = tmp_path / "rows.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(50)))
    with pytest.raises(DataError, match=r"50 rows; the limit is 10 \(FINETUNER_MAX_ROWS\)"):
        load_table(path, limits=Limits(max_rows=10))
    with pytest.raises(DataError, match=r"limit is 0 MB \(FINETUNER_MAX_FILE_MB\)"):
        load_table(path, limits=Limits(max_file_mb=0.0001))
    monkeypatch.setenv("FINETUNER_MAX_ROWS", "20")
    with pytest.raises(DataError, match="limit is 20"):
        load_table(path)
    monkeypatch.setenv("FINETUNER_MAX_ROWS", "lots")
    with pytest.raises(DataError, match="must be numbers"):
        load_table(path)
    monkeypatch.delenv("FINETUNER_MAX_ROWS")
    assert len(load_table(path)) == 50
