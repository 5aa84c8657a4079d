"""Several labels per text and a number per text: how label cells are read (separators, JSON lists, numbers, bad
cells), training with every method that applies on tiny models, save -> load -> the same predictions, thresholds,
the command line, baselines, explanations, ONNX export and the HTTP API for each task."""

from __future__ import annotations

import contextlib
import io
import json
import random
from typing import List, Tuple

import numpy as np
import pandas as pd
import pytest
from conftest import FILLER, NEGATIVE, NEUTRAL, POSITIVE, TINY_CONFIG
from fastapi.testclient import TestClient

from finetuner import LLMFinetuner
from finetuner.baselines import format_baselines, score_baselines
from finetuner.classifier import ONNX_DIR, TextClassifier
from finetuner.cli import main
from finetuner.data import LabelMap, detect_columns, table_to_labelled
from finetuner.errors import ConfigError, DataError
from finetuner.explain import explain, log_odds
from finetuner.onnx_export import REPORT_FILE, export_onnx
from finetuner.serve import create_app
from finetuner.tasks import detect_task, parse_label_sets, parse_targets
from finetuner.training.onnx_graph import QUANTIZED_FILE

EMOTIONS = {"joy": POSITIVE, "anger": NEGATIVE, "calm": NEUTRAL}
METHODS = ("head", "finetune", "head_finetune", "lora")
CONFIGS = {"head": TINY_CONFIG.replace(method="head", epochs=20),
           "finetune": TINY_CONFIG.replace(epochs=8),
           "head_finetune": TINY_CONFIG.replace(method="head_finetune", epochs=2),
           "lora": TINY_CONFIG.replace(method="lora", epochs=4, lora_r=4, lora_alpha=8.0)}


def emotion_data(n: int, seed: int = 0) -> Tuple[List[str], List[str]]:
    """Texts with a word of each emotion they carry (any number of them, none included) among four filler words;
    labels joined by ';'."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        words, names = rng.sample(FILLER, 4), []
        for name, pool in EMOTIONS.items():
            if rng.random() < 0.45:
                words.insert(rng.randrange(len(words) + 1), rng.choice(pool))
                names.append(name)
        texts.append(" ".join(words))
        labels.append(";".join(names))
    return texts, labels


def score_data(n: int, seed: int = 0) -> Tuple[List[str], List[float]]:
    """Seven-word texts whose number is 100 plus 10 per positive word (0 to 3 of them), plus noise below 1. Every
    text has the same length: batches grouped by length would otherwise hold one target each."""
    rng = random.Random(seed)
    texts, scores = [], []
    for _ in range(n):
        good = rng.randrange(4)
        words = rng.sample(FILLER, 7 - good) + [rng.choice(POSITIVE) for _ in range(good)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        scores.append(round(100 + 10 * good + rng.random(), 3))
    return texts, scores


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------ reading label cells

@pytest.mark.parametrize("separator", [";", "|", ","])
def test_separated_label_cells_are_several_labels_per_text(separator):
    cells = [f"joy{separator}love", "joy", "love", f"anger{separator}joy", "anger", ""]
    choice = detect_task(cells)
    assert (choice.task, choice.separator) == ("multi_label", separator)
    assert f"separated by {separator!r}" in choice.reason
    assert parse_label_sets(cells, separator) == [("joy", "love"), ("joy",), ("love",), ("anger", "joy"),
                                                   ("anger",), ()]


def test_json_and_python_lists_are_label_sets():
    cells = ['["joy", "love"]', '["anger"]', "[]", ["love", "joy"]]
    assert detect_task(cells).task == "multi_label"
    assert parse_label_sets(cells) == [("joy", "love"), ("anger",), (), ("joy", "love")]
    with pytest.raises(DataError, match=r"row 2 \('\[\"joy\", love\]' is not a JSON list\)"):
        parse_label_sets(['["joy"]', '["joy", love]'])


def test_a_cell_that_mixes_separators_is_refused_naming_its_row():
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(6)],
                          "labels": ["joy;love", "joy", "love", "anger;joy,love", "anger", "joy;anger"]})
    with pytest.raises(DataError, match=r"row 4 \('anger;joy,love' mixes ';' with ','\)"):
        table_to_labelled(frame)


def test_a_numeric_target_with_text_in_it_names_the_rows():
    scores = [str(1.5 + 0.25 * i) for i in range(30)]
    scores[3], scores[17] = "n/a", "about 4"
    frame = pd.DataFrame({"text": [f"text number {i}" for i in range(30)], "score": scores})
    with pytest.raises(DataError, match=r"not numbers: row 4 \('n/a'\), row 18 \('about 4'\)"):
        table_to_labelled(frame)
    assert parse_targets(["1", 2, "3.5e1"]) == [1.0, 2.0, 35.0]


def test_few_whole_numbers_are_classes_many_or_fractions_are_a_number():
    assert detect_task([0, 1, 2, 1, 0, 2]).task == "single_label"
    assert detect_task(["1", "2", "3", "4", "5"] * 3).task == "single_label"  # star ratings
    assert detect_task(list(range(25))).task == "single_label"  # the codes 0..24 (20 Newsgroups-like)
    assert detect_task(list(range(1, 78)) * 2).task == "single_label"  # 1..77
    years = detect_task([1990 + 3 * i for i in range(25)])  # whole numbers with gaps: a quantity
    assert years.task == "regression" and "with gaps" in years.reason
    assert detect_task(["Business, Finance", "Sports", "Health, Fitness"] * 5).task == "single_label"
    assert detect_task(["[deleted]", "a", "b", "a"]).task == "single_label"
    fractions = detect_task([0.5, 1.25, 3.0])
    assert fractions.task == "regression" and "fractions" in fractions.reason
    assert detect_task([0.5, 1.25, 3.0], "single_label").task == "single_label"  # asked for
    table = table_to_labelled(pd.DataFrame({"text": ["a b", "c d", "e f", "g h"], "label": [1, 0, 1, 0]}))
    assert table.task.task == "single_label" and table.labels == [1, 0, 1, 0]


def test_a_table_of_numbers_only_is_refused_unless_the_text_column_is_named():
    frame = pd.DataFrame({"a": [3, 1, 4, 1, 5], "b": [0, 1, 0, 1, 1]})
    with pytest.raises(DataError, match="No column holds text"):
        detect_columns(frame)
    with pytest.raises(DataError, match="No column holds text"):
        table_to_labelled(frame)
    assert detect_columns(frame, text_column="a") == ("a", "b")


def test_label_maps_of_several_labels_and_of_numbers():
    label_map = LabelMap.from_labels(["joy;love", "anger", ""], task="multi_label")
    assert label_map.names == ["anger", "joy", "love"] and label_map.problem_type == "multi_label_classification"
    assert label_map.encode(["love;joy", "", "anger"]) == [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    with pytest.raises(DataError, match="Row 2: label 'fear' is not one of the model's classes"):
        label_map.encode(["joy", "fear"])
    numbers = LabelMap.from_labels([1.5, 2.5], task="regression", target="valence")
    assert numbers.names == ["valence"] and numbers.encode(["1.5", 2]) == [1.5, 2.0]


# ------------------------------------------------------------------------------ training, per task and method

@pytest.fixture(scope="module")
def emotions():
    return emotion_data(120, seed=1), emotion_data(40, seed=2)


@pytest.fixture(scope="module")
def scores():
    return score_data(80, seed=1), score_data(30, seed=2)


@pytest.fixture(scope="module")
def trained(tiny_bert, emotions, scores):
    """Each method's model for each task, trained once for the module: {(task, method): LLMFinetuner}."""
    models = {}
    for task, (train, _) in (("multi_label", emotions), ("regression", scores)):
        for method in METHODS:
            model = LLMFinetuner(tiny_bert, config=CONFIGS[method])
            model.fine_tune(*train)
            models[task, method] = model
    return models


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_every_method_round_trips_with_identical_predictions(trained, emotions, scores, task, method, tmp_path):
    model = trained[task, method]
    assert model.classifier.task == task and model.config.method == method
    texts = (emotions if task == "multi_label" else scores)[1][0]
    folder = model.save(tmp_path / "model")
    meta = json.loads((folder / "finetuner.json").read_text())
    assert meta["task"] == task
    loaded = LLMFinetuner.load(folder)
    assert loaded.classifier.task == task and loaded.labels == model.labels
    np.testing.assert_allclose(loaded.predict_proba_array(texts), model.predict_proba_array(texts), rtol=1e-5,
                               atol=1e-6)
    if task == "regression":
        assert loaded.predict_labels(texts) == pytest.approx(model.predict_labels(texts), rel=1e-6)
    else:
        assert loaded.predict_labels(texts) == model.predict_labels(texts)
    if task == "multi_label":
        assert model.labels == ["anger", "calm", "joy"]
        assert all(isinstance(row, list) and set(row) <= set(model.labels) for row in model.predict_labels(texts))
        assert model.predict(texts) == model.predict_labels(texts)  # lists for every predict method
        probabilities = model.predict_proba(texts[:1])[0]
        assert list(probabilities) == model.labels and all(0 <= p <= 1 for p in probabilities.values())
    else:
        assert model.labels == ["value"]
        values = np.asarray(model.predict_labels(texts))
        # The saved model predicts in the target's units (trained on a standardised target, folded back).
        assert 85 < values.mean() < 135 and values.min() > 60 and values.max() < 160, values


def test_multi_label_models_learn_and_keep_their_thresholds(tiny_bert, emotions, tmp_path):
    (train, evaluation) = emotions
    model = LLMFinetuner(tiny_bert, config=CONFIGS["head"])
    model.fine_tune(*train, *evaluation)  # 120 rows: 50 held out to tune a threshold per label
    thresholds = model.classifier.thresholds
    assert thresholds is not None and len(thresholds) == 3 and all(0.05 <= t <= 0.95 for t in thresholds)
    assert model.classifier.label_thresholds() == thresholds
    metrics = model.evaluate_model(*evaluation)
    assert {"f1_macro", "f1_micro", "f1_samples", "exact_match"} <= set(metrics)
    assert metrics["f1_macro"] > 0.7 and metrics["f1_micro"] > 0.7, metrics
    folder = model.save(tmp_path / "model")
    assert json.loads((folder / "finetuner.json").read_text())["thresholds"] == thresholds
    loaded = TextClassifier.load(folder)
    assert loaded.thresholds == thresholds
    # The decisions use the thresholds: a label is predicted exactly when its probability reaches its threshold.
    probabilities = loaded.predict_proba_array(evaluation[0])
    expected = [[name for j, name in enumerate(loaded.labels) if row[j] >= thresholds[j]] for row in probabilities]
    assert loaded.predict_labels(evaluation[0]) == expected


def test_regression_learns_the_number_in_its_units(trained, scores):
    model = trained["regression", "finetune"]
    texts, truth = scores[1]
    predicted = np.asarray(model.predict_labels(texts))
    assert np.corrcoef(predicted, truth)[0, 1] > 0.85
    assert np.abs(predicted - np.asarray(truth)).mean() < 6  # the targets span 100 to 131 (standard deviation 11)
    metrics = model.evaluate_model(texts, truth)
    assert metrics["pearson"] > 0.85 and metrics["r2"] > 0.6 and {"spearman", "mae", "rmse"} <= set(metrics)


def test_decoder_lora_for_both_tasks(tiny_llama, emotions, scores, tmp_path):
    for name, (train, evaluation) in (("multi", emotions), ("number", scores)):
        model = LLMFinetuner(tiny_llama, config=CONFIGS["lora"].replace(epochs=2))
        model.fine_tune(train[0][:60], train[1][:60])
        loaded = LLMFinetuner.load(model.save(tmp_path / name))
        np.testing.assert_allclose(loaded.predict_proba_array(evaluation[0]),
                                   model.predict_proba_array(evaluation[0]), rtol=1e-5, atol=1e-6)


def test_fewshot_is_refused_for_both_tasks(tiny_bert, emotions, scores):
    for train in (emotions[0], scores[0]):
        model = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(method="fewshot"))
        with pytest.raises(ConfigError, match="method='fewshot' needs one class per text; for .* choose auto, head"):
            model.fine_tune(*train)


# ------------------------------------------------------------------------------ command line

def test_command_line_trains_predicts_and_evaluates_each_task(tiny_bert, emotions, scores, tmp_path):
    tables = {"multi": pd.DataFrame({"text": emotions[0][0], "emotions": emotions[0][1]}),
              "number": pd.DataFrame({"text": scores[0][0], "score": scores[0][1]})}
    for name, table in tables.items():
        data = tmp_path / f"{name}.csv"
        table.to_csv(data, index=False)
        code, out, err = run_cli("train", "--data", data, "--model", tiny_bert, "--output", tmp_path / name,
                                 "--method", "head", "--epochs", "20", "--learning-rate", "3e-3", "--seed", "0")
        assert code == 0, err
        said = out + err
        texts = tmp_path / f"{name}-texts.csv"
        table[["text"]].head(12).to_csv(texts, index=False)
        code, _, err = run_cli("predict", "--model", tmp_path / name, "--data", texts, "--output",
                               tmp_path / f"{name}-out.csv")
        assert code == 0, err
        predicted = pd.read_csv(tmp_path / f"{name}-out.csv", keep_default_na=False)
        code, report, err = run_cli("evaluate", "--model", tmp_path / name, "--data", data)
        assert code == 0, err
        metrics = json.loads(report)
        if name == "multi":
            assert "Task: several labels per text" in said
            assert list(predicted.columns) == ["text", "predicted_labels", "p_anger", "p_calm", "p_joy"]
            loaded = LLMFinetuner.load(tmp_path / name / "model")
            assert predicted["predicted_labels"].tolist() == [
                ";".join(row) for row in loaded.predict_labels(table["text"].head(12).tolist())]
            assert metrics["f1_macro"] > 0.7 and metrics["examples"] == len(table)
        else:
            assert "Task: a number per text (regression)" in said
            assert list(predicted.columns) == ["text", "predicted_value"]
            assert np.abs(predicted["predicted_value"] - table["score"].head(12)).mean() < 6
            assert metrics["pearson"] > 0.8 and metrics["examples"] == len(table)


def test_command_line_task_setting_treats_numbers_as_classes(tiny_bert, tmp_path):
    texts, _ = score_data(40)
    data = tmp_path / "codes.csv"
    pd.DataFrame({"text": texts, "label": [0.5 if i % 2 else 1.5 for i in range(40)]}).to_csv(data, index=False)
    code, _, err = run_cli("train", "--data", data, "--model", tiny_bert, "--output", tmp_path / "run",
                           "--method", "head", "--epochs", "1", "--task", "single_label")
    assert code == 2 and "is not a class label (decimal numbers look like a regression target)" in err


# ------------------------------------------------------------------------------ baselines and explanations

def test_baselines_for_each_task(tiny_bert, emotions, scores):
    multi = score_baselines(*emotions[0], *emotions[1], model_name=tiny_bert)
    assert set(multi) == {"tfidf_ovr", "embedding_ovr"}
    assert {"f1_macro", "f1_micro", "f1_samples", "exact_match", "seconds"} <= set(multi["tfidf_ovr"])
    assert multi["tfidf_ovr"]["f1_macro"] > 0.6  # the emotion words are in the TF-IDF vocabulary
    numbers = score_baselines(*scores[0], *scores[1], model_name=tiny_bert)
    assert set(numbers) == {"tfidf_ridge", "embedding_ridge"}
    assert numbers["tfidf_ridge"]["pearson"] > 0.7 and numbers["tfidf_ridge"]["mae"] < 8
    assert "TF-IDF + ridge regression: Pearson r" in format_baselines(numbers)
    assert "one-vs-rest" in format_baselines(multi)


def test_explanations_of_trained_models(trained, scores, emotions):
    number = trained["regression", "finetune"]
    texts = [text for text in scores[1][0] if set(text.split()) & set(POSITIVE)]
    hits = []
    for text in texts:
        result = number.explain(text)
        assert result.task == "regression" and result.label == "value"
        assert result.value == pytest.approx(number.predict_labels([text])[0], rel=1e-6)
        hits.append(result.top(1)[0][0] in POSITIVE if result.top(1) else False)
    # Each positive word adds about 10 to the number: it is the word that raises the prediction most.
    assert np.mean(hits) >= 0.8, hits
    assert "raised most by" in number.explain(texts[0]).headline()
    multi = trained["multi_label", "finetune"]
    text = emotions[1][0][3]
    joy = explain(multi.classifier, text, target="joy")
    column = multi.labels.index("joy")
    assert joy.task == "multi_label" and joy.threshold == multi.classifier.label_thresholds()[column]
    assert joy.probability == pytest.approx(multi.predict_proba_array([text])[0, column], rel=1e-6)
    # Each score is the change in joy's own log-odds (its sigmoid probability) when the word is left out.
    words = text.split()
    without = [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    odds = log_odds(multi.predict_proba_array([text] + without)[:, column])
    assert joy.scores == pytest.approx(list(odds[0] - odds[1:]), abs=1e-4)
    assert explain(multi.classifier, text).label == multi.labels[int(multi.predict_proba_array([text])[0].argmax())]


# ------------------------------------------------------------------------------ ONNX export and the HTTP API

@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_onnx_export_checks_each_task_and_predicts_the_same(trained, emotions, scores, task, tmp_path):
    model = trained[task, "finetune"]
    texts = (emotions if task == "multi_label" else scores)[1][0]
    folder = model.save(tmp_path / "model")
    result = export_onnx(model.classifier, folder / ONNX_DIR, quantize="int8", texts=texts)
    assert result.fp32.labels_identical and result.fp32.task == task and result.int8 is not None
    report = json.loads((folder / ONNX_DIR / REPORT_FILE).read_text())
    assert report["task"] == task and (folder / ONNX_DIR / QUANTIZED_FILE).is_file()
    readme = (folder / ONNX_DIR / "README.md").read_text()
    loaded = TextClassifier.load(folder)
    assert loaded.backend == "onnx"
    np.testing.assert_allclose(loaded.predict_proba_array(texts), model.predict_proba_array(texts),
                               rtol=1e-4, atol=1e-4)
    if task == "multi_label":
        assert report["thresholds"] == dict(zip(model.labels, model.classifier.label_thresholds()))
        assert "sigmoid" in readme and result.fp32.max_probability_difference <= 1e-3
        assert loaded.predict_labels(texts) == model.predict_labels(texts)
    else:
        assert "the predicted value itself" in readme and "predicted values the same as pytorch" in result.fp32.line()
        assert result.fp32.max_probability_difference < 0.1  # values around 100


def test_a_graph_that_predicts_other_numbers_is_refused(trained, tmp_path, monkeypatch):
    import finetuner.onnx_export as onnx_export

    real = onnx_export._probabilities
    monkeypatch.setattr(onnx_export, "_probabilities", lambda *args: real(*args) + 1.0)  # off by one
    with pytest.raises(onnx_export.OnnxExportError, match="does not predict what the model does.*max \\|Δ\\| 1"):
        export_onnx(trained["regression", "head"].classifier, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_the_http_api_answers_label_lists_and_values(trained):
    texts = ["so happy and calm today", "what an awful boring film"]
    multi = trained["multi_label", "finetune"]
    with TestClient(create_app(multi, name="emotions")) as client:
        body = client.post("/predict", json={"texts": texts}).json()
        assert body["task"] == "multi_label" and body["labels"] == multi.labels
        for row, expected, labels in zip(body["predictions"], multi.predict_proba_array(texts),
                                         multi.predict_labels(texts)):
            assert row["labels"] == labels and set(row) == {"labels", "probabilities"}
            assert [row["probabilities"][name] for name in multi.labels] == pytest.approx(expected, abs=1e-5)
        health = client.get("/health").json()
        assert health["task"] == "multi_label"
        assert health["thresholds"] == dict(zip(multi.labels, multi.classifier.label_thresholds()))
    number = trained["regression", "head"]
    with TestClient(create_app(number)) as client:
        body = client.post("/predict", json={"texts": texts}).json()
        assert body["task"] == "regression" and body["labels"] == ["value"]
        assert [row["value"] for row in body["predictions"]] == pytest.approx(number.predict_labels(texts),
                                                                              abs=1e-5)
        assert "predicted value" in client.get("/").json()["endpoints"]["POST /predict"]


def test_several_0_1_label_columns_are_one_multi_label_column(tmp_path):
    from finetuner.data import table_to_labelled

    frame = pd.DataFrame({"text": ["a sunny day", "a storm", "sunny and windy", "calm"] * 3,
                          "sunny": [1, 0, "true", 0] * 3, "windy": [0, "yes", 1, 0] * 3})
    table = table_to_labelled(frame, label_column="sunny,windy")
    assert table.task.task == "multi_label" and "one 0/1 column per label (sunny, windy)" in table.task.reason
    assert table.labels[:4] == ["sunny", "windy", "sunny;windy", ""] and table.text_column == "text"
    assert table.label_column == "sunny,windy"
    with pytest.raises(DataError, match=r"row 2 column 'windy' \('maybe'\)"):
        table_to_labelled(frame.assign(windy=[0, "maybe", 1, 0] * 3), label_column="sunny,windy")
    with pytest.raises(DataError, match="'rainy' are not in the table"):
        table_to_labelled(frame, label_column="sunny,rainy")


def test_labels_on_few_rows_are_flagged():
    from finetuner.data import table_to_labelled

    frame = pd.DataFrame({"text": [f"text {i}" for i in range(20)],
                          "labels": ["a;b"] * 10 + ["a"] * 8 + ["c", "a;c"]})
    warnings = table_to_labelled(frame).warnings
    assert len(warnings) == 1 and "1 label(s) are on fewer than 8 rows: 'c' (2)" in warnings[0]
