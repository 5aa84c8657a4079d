"""The Label tab's logic without a browser: a labelling session over a table with few or no labels (start, label,
skip, undo, refit, bulk acceptance, the learning curve, the tables out) and the tab's handlers, with the bundled
MiniLM on short topic texts."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from topic_data import topic_data

from finetuner.embeddings import embed
from finetuner.errors import DataError
from finetuner.prepare import prepare
from finetuner.ui.common import TableData
from finetuner.ui.data_tab import LOADED_COUNT, unlabelled_note
from finetuner.ui.label_session import ACCEPTED, parse_classes, start_session
from finetuner.ui.label_tab import (KEYED_CLASSES, LabelHandlers, class_updates, curve_chart, grid_view, render,
                                    render_card, render_status)

# Class names that say nothing about the topics: only labelled rows can tell which is which.
OPAQUE = {"sports": "alpha", "cooking": "beta", "weather": "gamma"}
CLASSES = list(OPAQUE.values())


@pytest.fixture(scope="module")
def topics():
    texts, labels = topic_data(8)  # 24 texts, classes interleaved
    return texts, [OPAQUE[label] for label in labels], embed(texts)


def _session(topics, labels=None, **kwargs):
    texts, _, vectors = topics
    frame = pd.DataFrame({"text": texts, "label": labels if labels is not None else [""] * len(texts)})
    return start_session(frame, "text", "label", kwargs.pop("classes", CLASSES), "topics.csv", embeddings=vectors,
                         **kwargs)


def _label_next(session, truth, count):
    for _ in range(count):
        row = session.current()
        session.give(row, truth[row])


def test_a_session_starts_zero_shot_and_refits_after_each_batch(topics):
    _, truth, _ = topics
    session = _session(topics, refit_every=5)
    assert session.news.startswith("Zero-shot") and session.count("suggestion") == 24
    assert len(session.queue) == 20 and session.current() is not None
    before = list(session.suggestions.labels)
    _label_next(session, truth, 4)
    assert session.suggestions.labels == before and session.since_refit == 4  # no refit yet
    _label_next(session, truth, 1)
    assert session.since_refit == 0 and session.count("person") == 5
    assert "Refitted on 5 label(s)" in session.news and "suggestion(s) changed" in session.news
    changed = int(session.news.split(": ")[1].split(" ")[0])
    assert changed == sum(a != b for a, b, who in zip(before, session.suggestions.labels, session.by) if not who)
    assert changed > 0 and "starts at 10 labels (5 more)" in session.news and session.curve == []
    _label_next(session, truth, 5)
    assert [point[0] for point in session.curve] == [10] and "cross-validated accuracy" in session.news
    _label_next(session, truth, 5)
    assert [point[0] for point in session.curve] == [10, 15] and "→" in session.news and "after 5 more label(s)" in \
        session.news
    unlabelled = [row for row, who in enumerate(session.by) if not who]
    right = np.mean([session.suggestions.labels[row] == truth[row] for row in unlabelled])
    assert right >= 0.9


def test_skip_and_undo(topics):
    _, truth, _ = topics
    session = _session(topics)
    first = session.current()
    assert "skipped" in session.skip(first) and session.current() != first and first in session.skipped
    second = session.current()
    session.give(second, truth[second])
    assert session.by[second] == "person" and second not in session.queue
    assert "no label again" in session.undo()
    assert session.current() == second and session.by[second] == "" and session.labels[second] is None
    with pytest.raises(DataError, match="Nothing to undo"):
        session.undo()
    with pytest.raises(DataError, match="not one of the classes"):
        session.give(second, "delta")


def test_undoing_a_label_the_suggestions_learned_refits_without_it(topics):
    _, truth, _ = topics
    session = _session(topics, refit_every=1)
    row = session.current()
    wrong = next(name for name in CLASSES if name != truth[row])
    session.give(row, wrong)  # refits at once: the model has learned the wrong label
    assert session.suggestions.labelled[row] and session.suggested(row) == (wrong, 1.0)
    session.undo()
    assert not session.suggestions.labelled[row] and session.current() == row
    label, confidence = session.suggested(row)
    assert confidence < 1.0
    session.accept_above(0.0)  # the undone label is not accepted as if a person had given it
    assert session.labelled_by(row) == ACCEPTED and session.suggestions.labelled.sum() == 0


def test_the_status_counts_down_to_the_next_refit_even_after_the_slider_is_lowered(topics):
    _, truth, _ = topics
    session = _session(topics, refit_every=10)
    _label_next(session, truth, 3)
    assert "next refit after 7 more labels" in render_status(session)
    session.refit_every = 2  # lowered below the 3 labels since the last refit: the next label refits
    assert "next refit after 1 more label." in render_status(session)
    _label_next(session, truth, 1)
    assert session.since_refit == 0


def test_undo_after_every_row_is_labelled_gives_the_row_back_to_label(topics):
    _, truth, _ = topics
    session = _session(topics, refit_every=50)
    _label_next(session, truth, 24)
    assert session.current() is None
    session.undo()
    row = session.current()
    assert row is not None and session.labelled_by(row) == "suggestion"
    session.skip(row)  # the only row left comes back
    assert session.current() == row


def test_skipped_rows_come_back_when_nothing_else_is_left(topics):
    session = _session(topics)
    for _ in range(24):
        session.skip(session.current())
    assert session.current() is not None and len(session.queue) == 20  # the skipped rows, ranked again


def test_bulk_acceptance_is_told_apart_and_training_takes_only_labelled_rows(topics):
    _, truth, _ = topics
    session = _session(topics)
    _label_next(session, truth, 6)
    threshold = float(np.median(session.suggestions.confidence[[not who for who in session.by]]))
    message = session.accept_above(threshold)
    accepted = session.count(ACCEPTED)
    assert 0 < accepted < 18 and f"Accepted {accepted} suggestion(s)" in message
    assert all(session.by[row] != ACCEPTED for row in session.queue)
    training = session.training_frame()
    assert len(training) == 6 + accepted and list(training.columns) == ["text", "label", "labelled_by"]
    assert training["labelled_by"].value_counts().to_dict() == {"person": 6, ACCEPTED: accepted}
    assert training["label"].notna().all()
    table = session.table()
    assert table["labelled_by"].value_counts().to_dict() == {"suggestion": 18 - accepted, ACCEPTED: accepted,
                                                             "person": 6}
    assert table.loc[table["labelled_by"] == "suggestion", "label"].isna().all()
    assert (table.loc[table["labelled_by"] == "person", "confidence"] == 1.0).all()
    assert "suggestions again" in session.undo() and session.count(ACCEPTED) == 0
    with pytest.raises(DataError, match="No unlabelled row"):
        session.accept_above(1.01)


def test_labels_in_the_table_count_and_an_export_starts_again_as_it_was(topics):
    texts, truth, vectors = topics
    given = [truth[row] if row < 4 else None for row in range(24)]
    session = _session(topics, labels=given, classes=[])  # classes: the labels present
    assert sorted(session.classes) == CLASSES and session.count("person") == 4
    session.accept_above(0.0)
    again = start_session(session.table(), "text", "label", [], "labelled.csv", embeddings=vectors)
    assert again.by == session.by and again.labels == session.labels
    with pytest.raises(DataError, match="Type the class names"):
        start_session(pd.DataFrame({"text": texts}), "text", None, [], embeddings=vectors)


def test_a_table_of_texts_alone_and_rows_without_a_text(topics):
    texts, _, vectors = topics
    frame = pd.DataFrame({"text": texts[:5] + [None, "  "], "id": range(7)})
    session = start_session(frame, "text", None, parse_classes(" alpha, beta,, gamma "), embeddings=vectors[:5])
    assert session.classes == CLASSES and session.label_column == "label" and session.positions == [0, 1, 2, 3, 4]
    table = session.table()
    assert list(table.columns) == ["text", "id", "label", "suggested_label", "confidence", "labelled_by"]
    assert table["labelled_by"].tolist()[5:] == [None, None] and table["labelled_by"].tolist()[:5] == [
        "suggestion"] * 5
    with pytest.raises(DataError, match="No row is labelled"):
        session.training_frame()
    # On the page: a table of texts alone has no columns chosen on the Data tab; the text column is found here.
    started = LabelHandlers.start(None, TableData(pd.DataFrame({"text": texts[:5]}), "texts.csv"), None, None,
                                  "alpha, beta, gamma", 5, "all rows")
    assert started[0].text_column == "text" and started[0].label_column == "label"


def test_what_the_page_shows(topics):
    _, truth, _ = topics
    session = _session(topics)
    session.texts[session.current()] = "<b>bold</b> & more"
    card = render_card(session)
    assert f'data-row="{session.current()}"' in card and "&lt;b&gt;bold&lt;/b&gt; &amp; more" in card
    assert "<b>1</b> alpha" in card and "Enter accepts" in card
    assert 'data-row="-1"' in render_card(None)
    _label_next(session, truth, 10)
    updates = render(session, "labelled by a person", "Done.")
    assert updates[2] == session.current() and updates[3].startswith("Done. **10** labelled by a person")
    assert len(updates[5]) == 10 and set(updates[5]["labelled_by"]) == {"person"}
    assert '<circle data-series="cross-validated on your labels"' in updates[4] and "labels by a person" in updates[4]
    assert '<circle data-series="expected on the rest"' in updates[4]
    assert 0 < session.curve[-1][2] <= 1 and "expected on the rows without a label" in session.news
    assert "starts at 10 labels" in curve_chart([])
    assert len(grid_view(session, "all rows")) == 24
    names, *buttons, other = class_updates(session)
    assert names == "alpha, beta, gamma" and len(buttons) == KEYED_CLASSES
    assert buttons[0].value == "1 · alpha" and buttons[3].visible is False and other.visible is False


def test_handlers_label_the_row_shown_only_and_keep_labels_on_a_restart(topics):
    texts, truth, vectors = topics
    data = TableData(pd.DataFrame({"text": texts, "label": [None] * 24}), "topics.csv")
    started = LabelHandlers.start(None, data, "text", "label", "alpha, beta, gamma", 5, "all rows")
    session = started[0]
    assert started[3].startswith("Labelling `topics.csv`: 24 texts") and started[6] == "alpha, beta, gamma"
    row = session.current()
    index = CLASSES.index(truth[row])
    stale = LabelHandlers.labeller(index)(session, row + 100, "all rows")  # a press meant for another row
    assert session.count("person") == 0 and stale[2] == row
    done = LabelHandlers.labeller(index)(session, row, "all rows")
    assert session.by[row] == "person" and done[2] == session.current() != row
    LabelHandlers.step(lambda s, r: s.accept(r))(session, session.current(), "all rows")
    assert session.count("person") == 2
    again = LabelHandlers.start(session, data, "text", "label", "alpha, beta, gamma", 5, "all rows")
    assert again[0].count("person") == 2 and "2 label(s) given before are kept" in again[3]
    assert again[0].embeddings is session.embeddings
    # a changed table (rows reordered, one labelled row gone, a row added): labels follow their texts
    labelled = [r for r, who in enumerate(session.by) if who]
    kept_rows = [r for r in reversed(range(24)) if r != labelled[0]]
    changed = TableData(pd.DataFrame({"text": [texts[r] for r in kept_rows] + ["A new text about rain."],
                                      "note": range(24)}), "topics v2.csv")
    moved = LabelHandlers.start(again[0], changed, "text", None, "alpha, beta, gamma", 5, "all rows")
    new = moved[0]
    assert new.count("person") == 1 and new.label_column == "label" and len(new.texts) == 24
    assert new.labels[new.texts.index(texts[labelled[1]])] == session.labels[labelled[1]]
    assert ("1 label(s) given before carried over to the rows with the same text; **1 label(s) given before are "
            "not carried over: their texts are not in this table or were labelled two ways**") in moved[3]
    same_again = LabelHandlers.start(new, changed, "text", None, "alpha, beta, gamma", 3, "all rows")
    assert "the 1 label(s) given before are kept." in same_again[3] and same_again[0].embeddings is new.embeddings
    with pytest.raises(gr.Error, match="Press Start labelling first"):
        LabelHandlers.undo(None, "all rows")


def test_carried_labels_prefer_a_person_and_skip_texts_labelled_two_ways(topics):
    from finetuner.ui.label_session import carry_labels

    texts, _, vectors = topics
    frame = pd.DataFrame({"text": ["same", "same", "twice", "twice", "other"],
                          "label": ["alpha", "alpha", "alpha", "beta", None],
                          "labelled_by": [ACCEPTED, "person", "person", "person", None]})
    old = start_session(frame, "text", "label", CLASSES, embeddings=vectors[:5])
    changed = pd.DataFrame({"text": ["twice", "other", "same", "new"]})
    out, column, carried, lost = carry_labels(old, changed, "text", None)
    assert column == "label" and carried == 1 and lost == 2  # "twice" is torn: neither label is carried
    assert out["label"].tolist() == [None, None, "alpha", None] and out.loc[2, "labelled_by"] == "person"


def test_use_and_export(topics, tmp_path):
    _, truth, _ = topics
    session = _session(topics)
    _label_next(session, truth, 3)
    session.texts[0] = session.frame.loc[0, "text"] = "=HYPERLINK(\"http://x\")"
    outputs = LabelHandlers.use(session, None, 0.2)
    assert len(outputs) == LOADED_COUNT + 1 and "now holds the **3** labelled rows" in outputs[0]
    table = outputs[1]
    assert table.name == "topics (labelled)" and len(table.frame) == 3
    assert outputs[5].value == "text" and outputs[6].value == "label"  # the columns labelled, not detected again
    (csv_path, jsonl_path), status = LabelHandlers.export(session)
    assert "Exported 24 rows (3 person, 0 accepted suggestion, 21 suggestion)" in status
    exported = pd.read_csv(csv_path)
    assert exported.loc[0, "text"].startswith("'=")  # formula-safe
    rows = [json.loads(line) for line in open(jsonl_path, encoding="utf-8")]
    assert rows[0]["text"].startswith("=") and [r["labelled_by"] for r in rows] == exported["labelled_by"].tolist()


def test_the_data_tab_points_rows_without_a_label_to_the_label_tab():
    frame = pd.DataFrame({"text": ["a b", "c d", "e f"], "label": ["x", "", None]})
    assert "2 rows have no label yet: label them in the **2 · Label** tab" in unlabelled_note(prepare(frame))
    assert "No labels yet?" in unlabelled_note(prepare(pd.DataFrame({"text": ["a b", "c d"]})))
    assert unlabelled_note(prepare(pd.DataFrame({"text": ["a b", "c d"], "label": ["x", "y"]}))) == ""


def test_more_classes_than_number_keys(topics):
    texts, _, vectors = topics
    classes = [f"topic {n}" for n in range(KEYED_CLASSES + 2)]
    frame = pd.DataFrame({"text": texts, "label": [None] * 24})
    session = start_session(frame, "text", "label", classes, embeddings=vectors)
    names, *buttons, other = class_updates(session)
    assert all(button.visible for button in buttons) and buttons[-1].value == f"{KEYED_CLASSES} · topic 8"
    assert other.visible is True and "the other 2 from the list" in render_card(session)
    row = session.current()
    LabelHandlers.other_class(session, row, "topic 10", "all rows")
    assert session.labels[row] == "topic 10" and session.by[row] == "person"

