"""Suggested labels and the label-next queue (finetuner.labelling) with the bundled MiniLM on short topic texts,
and ``finetuner suggest``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_cli import run_cli
from topic_data import TOPICS, topic_data

import finetuner.labelling as labelling
from finetuner.embeddings import embed
from finetuner.errors import ConfigError, DataError
from finetuner.labelling import SUGGESTION_COLUMNS, label_queue, next_to_label, suggest_labels

CLASSES = list(TOPICS)  # sports, cooking, weather
# Names that say nothing about the topics: only labelled rows can tell which is which.
OPAQUE = {"sports": "alpha", "cooking": "beta", "weather": "gamma"}


@pytest.fixture(scope="module")
def topics():
    texts, labels = topic_data(8)  # 24 texts, classes interleaved
    return texts, labels, embed(texts)


def _accuracy(found, truth, rows):
    return np.mean([found.labels[row] == truth[row] for row in rows])


def test_zero_shot_from_the_class_names_alone(topics):
    texts, truth, vectors = topics
    found = suggest_labels(texts, CLASSES, embeddings=vectors)
    assert found.reason.startswith("Zero-shot") and not found.labelled.any()
    assert _accuracy(found, truth, range(len(texts))) >= 0.9
    assert ((found.confidence > 1 / 3) & (found.confidence <= 1)).all()
    assert found.expected_accuracy() == pytest.approx(found.confidence.mean())
    assert found.expected_accuracy([0, 1]) == pytest.approx(found.confidence[:2].mean())
    np.testing.assert_allclose(found.probabilities.sum(axis=1), 1, atol=1e-6)
    frame = found.to_frame()
    assert tuple(frame.columns) == SUGGESTION_COLUMNS and set(frame["labelled_by"]) == {"suggestion"}


def test_person_labels_are_kept_and_the_refit_changes_the_suggestions(topics):
    texts, truth, vectors = topics
    names = [OPAQUE[label] for label in truth]
    before = suggest_labels(texts, list(OPAQUE.values()), embeddings=vectors)
    given = [names[row] if row < 3 else None for row in range(len(texts))]  # one row of each class
    given[4] = "gamma"  # a person's label is kept even where the model disagrees (row 4 is cooking)
    after = suggest_labels(texts, list(OPAQUE.values()), given, embeddings=vectors)
    unlabelled = [row for row in range(len(texts)) if given[row] is None]
    assert after.labelled.sum() == 4 and after.reason.startswith("From 4 labelled row(s)")
    assert after.labels[4] == "gamma" and after.confidence[4] == 1.0
    assert [after.labels[row] for row in range(3)] == names[:3]
    named = [OPAQUE[label] for label in truth]
    accuracy_before = np.mean([before.labels[row] == named[row] for row in unlabelled])
    accuracy_after = np.mean([after.labels[row] == named[row] for row in unlabelled])
    assert accuracy_before < 0.7 and accuracy_after >= 0.9
    assert list(after.to_frame()["labelled_by"][:5]) == ["person"] * 3 + ["suggestion", "person"]


def test_classes_come_from_the_labels_present_and_numbers_read_as_classes(topics):
    texts, truth, vectors = topics
    given = [truth[row] if row < 6 else (np.nan if row % 2 else "  ") for row in range(len(texts))]
    found = suggest_labels(texts, labels=given, embeddings=vectors)
    assert found.classes == sorted(CLASSES) and found.labelled.sum() == 6
    numbers = [float(CLASSES.index(truth[row])) if row < 6 else None for row in range(len(texts))]
    found = suggest_labels(texts, ["0", "1", "2"], numbers, embeddings=vectors)
    assert found.labels[:6] == [str(CLASSES.index(label)) for label in truth[:6]]


def test_given_embeddings_spare_embedding_the_texts_again(topics, monkeypatch):
    texts, _, vectors = topics
    embedded = []

    def counting_embed(batch, model_name=labelling.DEFAULT_MODEL):
        embedded.extend(batch)
        return embed(batch, model_name)

    monkeypatch.setattr(labelling, "embed", counting_embed)
    found = suggest_labels(texts, CLASSES, embeddings=vectors)
    assert not set(texts) & set(embedded)  # only the class-name sentences were embedded
    embedded.clear()
    assert next_to_label(texts, suggestions=found, k=3) == next_to_label(texts, CLASSES, k=3)
    assert sum(text in embedded for text in texts) == len(texts)  # the second call embedded each text once


def test_queue_takes_uncertain_rows_spread_over_the_table(topics):
    texts, truth, vectors = topics
    given = [truth[0]] + [None] * (len(texts) - 1)
    found = suggest_labels(texts, CLASSES, given, embeddings=vectors)
    queue = next_to_label(texts, suggestions=found, k=3)
    margins = found.margins()
    assert len(queue) == 3 and 0 not in queue
    assert list(margins[queue]) == sorted(margins[queue])  # the least sure first
    uncertain = np.argsort(np.where(found.labelled, np.inf, margins), kind="stable")[:labelling.POOL_FACTOR * 3]
    assert set(queue) <= set(uncertain.tolist())
    assert queue == next_to_label(texts, CLASSES, given, k=3, embeddings=vectors)  # deterministic


def _blobs(sizes, seed=0):
    """Unit vectors in tight groups around orthogonal directions, ``sizes[i]`` rows in group i (in order)."""
    rng = np.random.default_rng(seed)
    rows = np.vstack([np.eye(8)[i] + 0.05 * rng.standard_normal((size, 8)) for i, size in enumerate(sizes)])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_label_queue_covers_the_table_first_when_there_are_few_classes():
    embeddings = _blobs([3, 8, 5])  # rows 0-2, 3-10, 11-15
    # The model is least sure of the first group; with no labels and two classes, the queue covers every group.
    margins = np.r_[np.full(3, 0.01), np.full(13, 0.9)]
    probabilities = np.c_[(1 + margins) / 2, (1 - margins) / 2]
    queue = label_queue(probabilities, embeddings, np.zeros(16, dtype=bool), 3)
    assert _group(queue[0]) == 1 and sorted(map(_group, queue)) == [0, 1, 2]  # the largest group first
    # Once a row is labelled, the least sure rows come first, still one per group.
    labelled = np.zeros(16, dtype=bool)
    labelled[5] = True
    queue = label_queue(probabilities, embeddings, labelled, 2, near_duplicate=1.0)
    assert _group(queue[0]) == 0 and len({_group(row) for row in queue}) == 2
    # With many classes, the least sure rows come first from the start.
    many = np.full((16, 5), 0.1)
    many[:, 0] = 0.6 - 0.5 * (np.arange(16) < 3)
    many[:3, 1] = 0.2
    assert _group(label_queue(many, embeddings, np.zeros(16, dtype=bool), 2)[0]) == 0


def _group(row):
    return 0 if row < 3 else 1 if row < 11 else 2


def test_label_queue_leaves_near_duplicates_of_labelled_rows_for_last_and_keeps_to_eligible_rows():
    embeddings = np.eye(4)[[0, 0, 1, 2, 3, 1]].astype(float)  # rows 0/1 and 2/5 are identical
    probabilities = np.c_[[0.55, 0.52, 0.6, 0.95, 0.75, 0.57], [0.45, 0.48, 0.4, 0.05, 0.25, 0.43]]
    labelled = np.array([True, False, False, False, False, False])
    queue = label_queue(probabilities, embeddings, labelled, 5)
    assert queue[-1] == 1 and sorted(queue) == [1, 2, 3, 4, 5]  # row 1 repeats the labelled row 0
    assert not {2, 5} <= set(label_queue(probabilities, embeddings, labelled, 3))  # one of two identical rows
    eligible = np.array([True, True, False, True, False, True])
    assert set(label_queue(probabilities, embeddings, labelled, 5, eligible=eligible)) == {1, 3, 5}
    with pytest.raises(ConfigError, match="k must be at least 1"):
        label_queue(probabilities, embeddings, labelled, 0)


@pytest.mark.parametrize("classes, labels, error, message", [
    (["sports"], None, ConfigError, "at least two classes"),
    (None, ["sports", None, None], ConfigError, "labels present name only 'sports'"),
    (None, None, ConfigError, "labels present name none"),
    (["sports", "sports", "cooking"], None, ConfigError, "repeat 'sports'"),
    (["sports", " "], None, ConfigError, "A class name is empty"),
    (["sports", "cooking"], [None, "baking", None], DataError, r"not among the classes .*row 2 'baking'"),
    (["sports", "cooking"], ["sports"], DataError, "3 texts but 1 labels"),
])
def test_bad_classes_and_labels_say_how_to_fix_them(classes, labels, error, message):
    texts = ["The striker scored.", "The chef baked bread.", "Rain is forecast."]
    with pytest.raises(error, match=message):
        suggest_labels(texts, classes, labels)


def test_empty_texts_and_mismatched_embeddings_are_refused():
    with pytest.raises(DataError, match="empty text.*row 2"):
        suggest_labels(["The striker scored.", "  "], CLASSES)
    with pytest.raises(DataError, match="no texts"):
        suggest_labels([], CLASSES)
    with pytest.raises(DataError, match="one row per text"):
        suggest_labels(["The striker scored.", "Rain."], CLASSES, embeddings=np.zeros((3, 384)))


def test_cli_suggest_writes_every_row_with_who_labelled_it(tmp_path, topics):
    texts, truth, _ = topics
    table = pd.DataFrame({"id": range(len(texts)), "text": texts,
                          "label": [truth[row] if row < 3 else "" for row in range(len(texts))]})
    table.loc[5, "text"] = "=HYPERLINK(1) The chef baked a cake."
    table.to_csv(tmp_path / "in.csv", index=False)
    code, out, err = run_cli("suggest", "--data", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
                             "--next", "4")
    assert code == 0, err
    written = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(written.columns) == ["id", "text", "label", *SUGGESTION_COLUMNS, "label_next"]
    assert list(written["labelled_by"]) == ["person"] * 3 + ["suggestion"] * (len(texts) - 3)
    assert list(written["suggested_label"][:3]) == truth[:3] and set(written["confidence"][:3]) == {1.0}
    assert np.mean(written["suggested_label"][3:] == pd.Series(truth[3:], index=range(3, len(texts)))) >= 0.9
    assert written.loc[5, "text"].startswith("'=")  # formula neutralised
    ranks = written["label_next"][written["label_next"] != ""].astype(int)
    assert sorted(ranks) == [1, 2, 3, 4] and (ranks.index >= 3).all()
    assert "24 rows, 3 labelled by a person, 21 suggested" in out and "Label next (4 rows" in out


def test_cli_suggest_keeps_accepted_suggestions_without_learning_from_them(tmp_path, topics):
    texts, truth, _ = topics
    wrong = {row: next(c for c in CLASSES if c != truth[row]) for row in (3, 4, 5)}
    table = pd.DataFrame({"text": texts, "label": [truth[row] if row < 3 else wrong.get(row, "")
                                                   for row in range(len(texts))],
                          "labelled_by": ["person"] * 3 + ["accepted suggestion"] * 3 + [""] * (len(texts) - 6)})
    table.to_csv(tmp_path / "in.csv", index=False)
    code, out, err = run_cli("suggest", "--data", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
                             "--next", "30")
    assert code == 0, err
    written = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(written.columns) == ["text", "label", *SUGGESTION_COLUMNS, "label_next"]  # one labelled_by
    assert list(written["labelled_by"][:7]) == ["person"] * 3 + ["accepted suggestion"] * 3 + ["suggestion"]
    assert [written.loc[row, "label"] for row in (3, 4, 5)] == list(wrong.values())  # kept as they were
    # the quick model learned from the three person labels only: the same suggestions as with rows 3-5 unlabelled
    alone = suggest_labels(texts, CLASSES, [truth[row] if row < 3 else None for row in range(len(texts))])
    assert list(written["suggested_label"][3:]) == alone.labels[3:]
    assert written["label_next"][:6].tolist() == [""] * 6  # never asked again
    assert "3 labelled by a person, 3 accepted suggestion(s) kept (not learned from), 18 suggested" in out
    # a class that only accepted suggestions name is still a class; a mark on a blank label means nothing
    table.loc[:2, "label"] = ["sports", "sports", "cooking"]
    table.loc[3, "label"] = "weather"
    table.loc[6, "labelled_by"] = "accepted suggestion"
    table.to_csv(tmp_path / "in.csv", index=False)
    code, out, err = run_cli("suggest", "--data", tmp_path / "in.csv", "--output", tmp_path / "out.csv")
    assert code == 0 and "(3 classes: cooking, sports, weather)" in out, err
    assert pd.read_csv(tmp_path / "out.csv", keep_default_na=False).loc[6, "labelled_by"] == "suggestion"
    # accepted labels are checked against --classes like a person's
    code, out, err = run_cli("suggest", "--data", tmp_path / "in.csv", "--classes", "sports,cooking")
    assert code == 2 and "not among the classes (sports, cooking): row 4 'weather'" in err, err


def test_cli_suggest_refuses_a_label_outside_the_classes(tmp_path):
    pd.DataFrame({"text": ["The striker scored.", "The chef baked bread."],
                  "label": ["sports", "baking"]}).to_csv(tmp_path / "in.csv", index=False)
    code, out, err = run_cli("suggest", "--data", tmp_path / "in.csv", "--classes", "sports,cooking")
    assert code == 2 and "not among the classes (sports, cooking): row 2 'baking'" in err
    code, out, err = run_cli("suggest", "--data", tmp_path / "in.csv", "--classes", "sports,,cooking")
    assert code == 2 and "--classes has an empty name" in err


def test_cross_validated_accuracy_scores_each_labelled_row_by_a_model_that_did_not_see_it(topics):
    texts, truth, vectors = topics
    names = [OPAQUE[label] for label in truth]
    few = [names[row] if row < 9 else None for row in range(len(texts))]
    assert labelling.cross_validated_accuracy(texts, list(OPAQUE.values()), few, embeddings=vectors) is None
    given = [names[row] if row < 15 else None for row in range(len(texts))]
    right = labelling.cross_validated_accuracy(texts, list(OPAQUE.values()), given, embeddings=vectors)
    assert right is not None and right >= 0.8
    # Labels unrelated to the texts (every other row; the topics repeat every third) cannot be predicted.
    shuffled = [("alpha", "beta")[row % 2] if row < 15 else None for row in range(len(texts))]
    wrong = labelling.cross_validated_accuracy(texts, list(OPAQUE.values()), shuffled, embeddings=vectors)
    assert wrong is not None and wrong < right - 0.3
    with pytest.raises(ConfigError, match="folds must be at least 2"):
        labelling.cross_validated_accuracy(texts, list(OPAQUE.values()), given, embeddings=vectors, folds=1)


def test_the_first_rows_of_a_fresh_queue_cover_every_topic(topics):
    texts, truth, vectors = topics
    queue = next_to_label(texts, list(OPAQUE.values()), k=20, embeddings=vectors)
    assert len(queue) == 20 and len(set(queue)) == 20
    assert {truth[row] for row in queue[:3]} == set(CLASSES)  # a person who labels three rows meets all three


def test_label_queue_asks_each_text_once_before_its_copies():
    rng = np.random.default_rng(0)
    distinct = rng.standard_normal((6, 8))
    embeddings = np.vstack([np.repeat(distinct[:1], 5, axis=0), distinct[1:]])  # rows 0-4: one text five times
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    probabilities = np.c_[np.full(10, 0.5), np.full(10, 0.5)]
    probabilities[:5] = [0.5, 0.5]  # the copies are the least sure rows
    probabilities[5:] = [0.8, 0.2]
    labelled = np.zeros(10, dtype=bool)
    labelled[9] = True
    queue = label_queue(probabilities, embeddings, labelled, 6)
    assert sum(row < 5 for row in queue[:5]) == 1 and set(queue[:5]) >= {5, 6, 7, 8}
    assert len(queue) == 6 and queue[5] < 5  # a copy only once the distinct texts are taken
