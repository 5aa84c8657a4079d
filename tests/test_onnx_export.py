"""ONNX export of every method (tiny models): one graph, checked against PyTorch, loaded by ONNX Runtime and by
finetuner's own load(); int8; refusals; the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from transformers import AutoConfig, AutoTokenizer

from conftest import TINY_CONFIG, make_sentiment_data
from finetuner import LLMFinetuner
from finetuner.__main__ import main
from finetuner.classifier import ONNX_DIR, TextClassifier
from finetuner.errors import ModelLoadError
from finetuner.metrics import logits_to_probabilities
from finetuner.onnx_export import REPORT_FILE, attach_onnx, export_onnx
from finetuner.training.onnx_graph import ONNX_FILE, QUANTIZED_FILE, OnnxExportError

METHODS = {
    "finetune": TINY_CONFIG,
    "head": TINY_CONFIG.replace(method="head"),
    "fewshot": TINY_CONFIG.replace(method="fewshot", epochs=1),
    "head_finetune": TINY_CONFIG.replace(method="head_finetune", epochs=2),
    "lora": TINY_CONFIG.replace(method="lora", lora_r=4, lora_alpha=8.0),
}


@pytest.fixture(scope="module")
def data():
    train = make_sentiment_data(60, seed=1)
    return train[0], train[1], make_sentiment_data(200, seed=3)[0]


@pytest.fixture(scope="module", params=sorted(METHODS))
def trained(request, tiny_bert, data):
    finetuner = LLMFinetuner(tiny_bert, config=METHODS[request.param])
    finetuner.fine_tune(data[0], data[1])
    return request.param, finetuner


def _ort_probabilities(directory, texts, file=ONNX_FILE):
    """Predictions the way a user without finetuner gets them: onnxruntime and the saved tokenizer alone."""
    tokenizer = AutoTokenizer.from_pretrained(directory)
    session = ort.InferenceSession(str(directory / file), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=64, return_tensors="np")
    return logits_to_probabilities(session.run(["logits"], {n: encoded[n].astype(np.int64) for n in names})[0])


def test_every_method_exports_a_graph_that_predicts_what_the_model_does(trained, data, tmp_path):
    method, finetuner = trained
    texts = data[2]
    result = export_onnx(finetuner.classifier, tmp_path / "onnx", texts=texts)
    assert result.fp32.labels_identical and result.fp32.texts == len(texts)
    assert result.fp32.max_probability_difference <= 1e-3
    expected = finetuner.predict_proba_array(texts)
    got = _ort_probabilities(tmp_path / "onnx", texts)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    assert np.abs(got - expected).max() <= 1e-3, method
    config = AutoConfig.from_pretrained(tmp_path / "onnx")  # standard metadata beside the graph
    assert [config.id2label[i] for i in range(config.num_labels)] == finetuner.labels
    assert (tmp_path / "onnx" / "labels.txt").read_text().split() == finetuner.labels
    report = json.loads((tmp_path / "onnx" / REPORT_FILE).read_text())
    assert report["fp32"]["labels_identical"] and report["files"] == [ONNX_FILE]


def test_export_leaves_the_model_as_it_was(trained, data, tmp_path):
    method, finetuner = trained
    before = finetuner.predict_proba_array(data[2])
    export_onnx(finetuner.classifier, tmp_path / "onnx")
    np.testing.assert_array_equal(finetuner.predict_proba_array(data[2]), before)
    assert finetuner.classifier.backend == "torch"


def test_saved_folder_with_onnx_predicts_through_onnx_runtime(trained, data, tmp_path):
    method, finetuner = trained
    folder = finetuner.save(tmp_path / "model")
    export_onnx(finetuner.classifier, folder / ONNX_DIR)
    loaded = TextClassifier.load(folder)
    assert loaded.backend == "onnx"
    expected = finetuner.predict_proba_array(data[2])
    got = loaded.predict_proba_array(data[2])
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert TextClassifier.load(folder, backend="torch").backend == "torch"


def test_int8_graph_is_written_and_checked(tiny_bert, data, tmp_path):
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG)
    finetuner.fine_tune(data[0], data[1])
    result = export_onnx(finetuner.classifier, tmp_path / "onnx", quantize="int8", texts=data[2])
    assert result.files == [ONNX_FILE, QUANTIZED_FILE] and result.int8 is not None
    assert result.int8.against == "the fp32 graph" and result.int8.agreement >= 0.9
    quantized = _ort_probabilities(tmp_path / "onnx", data[2], QUANTIZED_FILE)
    reference = _ort_probabilities(tmp_path / "onnx", data[2])
    assert (quantized.argmax(axis=1) == reference.argmax(axis=1)).mean() == pytest.approx(result.int8.agreement)
    assert (tmp_path / "onnx" / QUANTIZED_FILE).stat().st_size < (tmp_path / "onnx" / ONNX_FILE).stat().st_size


def test_a_graph_that_predicts_otherwise_is_refused_and_nothing_is_written(tiny_bert, data, tmp_path,
                                                                             monkeypatch):
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG)
    finetuner.fine_tune(data[0], data[1])
    import finetuner.onnx_export as onnx_export

    real = onnx_export._probabilities
    monkeypatch.setattr(onnx_export, "_probabilities", lambda *args: real(*args)[:, ::-1])  # a graph that swaps classes
    with pytest.raises(OnnxExportError, match="does not predict what the model does"):
        export_onnx(finetuner.classifier, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_onnx_backend_is_dropped_when_the_weights_change(tiny_bert, data):
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=1))
    finetuner.fine_tune(data[0], data[1])
    attach_onnx(finetuner.classifier)
    assert finetuner.classifier.backend == "onnx"
    finetuner.fine_tune(data[0], data[1])  # new weights: the old graph no longer describes the model
    assert finetuner.classifier.backend == "torch"


def test_decoder_with_lora_exports(tiny_llama, tmp_path):
    train = make_sentiment_data(40, seed=1)
    finetuner = LLMFinetuner(tiny_llama, config=METHODS["lora"])
    finetuner.fine_tune(*train)
    texts = make_sentiment_data(50, seed=4)[0]
    result = export_onnx(finetuner.classifier, tmp_path / "onnx", texts=texts)
    assert result.fp32.labels_identical and result.inputs == ["input_ids", "attention_mask"]


def test_command_line_exports_into_the_model_folder_and_predict_uses_it(tiny_bert, data, tmp_path, capsys):
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=2))
    finetuner.fine_tune(data[0], data[1])
    folder = finetuner.save(tmp_path / "run" / "model")
    assert main(["export", "--model", str(tmp_path / "run"), "--quantize", "int8"]) == 0
    out = capsys.readouterr()
    assert f"Wrote {ONNX_FILE}, {QUANTIZED_FILE} to {folder / ONNX_DIR}" in out.out
    assert "labels identical to pytorch" in out.err
    assert TextClassifier.load(folder).backend == "onnx"
    assert main(["export", "--model", str(tmp_path / "run"), "--quantize", "int4"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_served_through_onnx_runtime(tiny_bert, data, tmp_path):
    from fastapi.testclient import TestClient

    from finetuner.serve import create_app

    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=2))
    finetuner.fine_tune(data[0], data[1])
    folder = finetuner.save(tmp_path / "model")
    finetuner.export_onnx(folder / ONNX_DIR)
    loaded = LLMFinetuner.load(folder)
    with TestClient(create_app(loaded, name="tiny")) as client:
        body = client.post("/predict", json={"texts": data[2][:20]}).json()
    assert body["model"]["backend"] == "onnx"
    expected = finetuner.predict_proba_array(data[2][:20])
    got = np.array([[p["probabilities"][name] for name in loaded.labels] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_predict_builds_the_graph_on_demand_with_backend_onnx(tiny_bert, data, tmp_path, capsys):
    import pandas as pd

    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=2))
    finetuner.fine_tune(data[0], data[1])
    folder = finetuner.save(tmp_path / "model")
    pd.DataFrame({"text": data[2][:30]}).to_csv(tmp_path / "new.csv", index=False)
    outputs = {}
    for backend in ("torch", "onnx"):
        assert main(["predict", "--model", str(folder), "--data", str(tmp_path / "new.csv"), "--backend", backend,
                     "--output", str(tmp_path / f"{backend}.csv")]) == 0
        outputs[backend] = pd.read_csv(tmp_path / f"{backend}.csv")
    assert not (folder / ONNX_DIR).exists()  # built in a temporary folder, the model folder is left as it was
    assert outputs["onnx"]["predicted_label"].tolist() == outputs["torch"]["predicted_label"].tolist()
    np.testing.assert_allclose(outputs["onnx"]["confidence"], outputs["torch"]["confidence"], atol=1e-4)


@pytest.fixture(scope="module")
def saved(tiny_bert, data, tmp_path_factory):
    """A trained tiny model saved with its ONNX export in onnx/."""
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=2))
    finetuner.fine_tune(data[0], data[1])
    folder = finetuner.save(tmp_path_factory.mktemp("saved") / "run" / "model")
    finetuner.export_onnx(folder / ONNX_DIR)
    return finetuner, folder


def test_export_never_replaces_a_folder_that_is_not_an_export(saved, tmp_path, capsys):
    finetuner, folder = saved
    precious = tmp_path / "deploy"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    for output in (precious, folder, folder.parent):
        assert main(["export", "--model", str(folder), "--output", str(output)]) == 2
        assert "choose a new folder" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me" and (folder / "finetuner.json").is_file()
    assert main(["export", "--model", str(folder), "--output", str(tmp_path / "new")]) == 0
    assert main(["export", "--model", str(folder), "--output", str(tmp_path / "new")]) == 0  # an export: replaced


def test_the_exported_tokenizer_cuts_where_training_did(saved):
    finetuner, folder = saved
    tokenizer = AutoTokenizer.from_pretrained(folder / ONNX_DIR)
    assert tokenizer.model_max_length == finetuner.classifier.length_limit()
    long_text = " ".join(["good"] * 500)
    assert len(tokenizer(long_text, truncation=True)["input_ids"]) == finetuner.classifier.length_limit()


def test_a_graph_of_other_weights_is_not_used(saved, data, tmp_path):
    finetuner, folder = saved
    assert TextClassifier.load(folder).backend == "onnx"
    resaved = finetuner.save(tmp_path / "resaved")  # new weights id
    shutil.copytree(folder / ONNX_DIR, resaved / ONNX_DIR)
    with pytest.warns(UserWarning, match="was not made from the weights saved there"):
        assert TextClassifier.load(resaved).backend == "torch"
    with pytest.raises(ModelLoadError, match="python -m finetuner export --model"):
        TextClassifier.load(resaved, backend="onnx")
    assert LLMFinetuner.load(resaved, backend="onnx").classifier.backend == "onnx"  # built anew, on demand
    (resaved / ONNX_DIR / ONNX_FILE).write_bytes(b"not a graph")
    with pytest.warns(UserWarning, match="export"):
        assert TextClassifier.load(resaved).backend == "torch"


def test_an_imported_zip_keeps_no_onnx_graph(saved, tmp_path):
    import zipfile

    from finetuner.runs import RunStore

    finetuner, folder = saved
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in folder.rglob("*"):
            if path.is_file():
                out.write(path, f"model/{path.relative_to(folder).as_posix()}")
    record = RunStore(tmp_path / "runs").import_zip(archive)
    assert not (tmp_path / "runs" / record.id / "model" / ONNX_DIR).exists()


def test_a_folder_of_a_newer_format_says_so(saved, tmp_path):
    finetuner, folder = saved
    copy = tmp_path / "newer"
    shutil.copytree(folder, copy)
    meta = json.loads((copy / "finetuner.json").read_text())
    (copy / "finetuner.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelLoadError, match="saved by a newer finetuner"):
        TextClassifier.load(copy)
