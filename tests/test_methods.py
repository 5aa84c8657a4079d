"""The embedding-head and few-shot methods and ``method="auto"`` on tiny models: training, the choice and its
reason, the seed API, save/load round trips, progress events."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import make_sentiment_data

from finetuner import ConfigError, LLMFinetuner, TrainConfig
from finetuner.config import METHOD_DEFAULTS
from finetuner.method_choice import (FEWSHOT_BELOW_EXAMPLES_PER_CLASS, FEWSHOT_MAX_CLASSES, FEWSHOT_MAX_ROWS,
                                     choose_method, names_are_meaningful)
from finetuner.training.embedding_methods import NAME_COPIES, RELATED_WORDS_UP_TO_EXAMPLES_PER_CLASS, pair_budget
from finetuner.training.label_words import WORDS_PER_CLASS, vocabulary_words
from finetuner.training.sentence_classifier import HEAD_FILE, LABEL_TEMPLATES, SentenceClassifier

HEAD = TrainConfig(method="head", seed=0)
FEWSHOT = TrainConfig(method="fewshot", seed=0, batch_size=8, learning_rate=1e-3)


@pytest.fixture(params=["bert", "distilbert"])
def model_path(request, tiny_bert, tiny_distilbert):
    return {"bert": tiny_bert, "distilbert": tiny_distilbert}[request.param]


def test_auto_leaves_epochs_for_the_chosen_method():
    config = TrainConfig()
    assert config.method == "auto" and config.epochs is None and config.batch_size is None
    for method, defaults in METHOD_DEFAULTS.items():
        chosen = config.replace(method=method)
        assert (chosen.epochs, chosen.batch_size) == (defaults["epochs"], defaults["batch_size"])
    assert TrainConfig(epochs=2).replace(method="finetune").epochs == 2  # a given value is kept


@pytest.mark.parametrize("method", ["fewshot", "head", "auto"])
def test_methods_are_accepted_and_unknown_ones_named(method):
    assert TrainConfig(method=method).method == method
    with pytest.raises(ConfigError, match="auto, finetune, head, fewshot, head_finetune, lora"):
        TrainConfig(method="setfit")


def test_choice_follows_examples_per_class_and_classes_not_total_rows():
    many_classes = {f"intent_{i}": 8 for i in range(150)}  # 150 classes: many rows, few per class
    assert choose_method(many_classes, "bert").method == "head_finetune"
    assert choose_method({"pos": 64, "neg": 64}, "bert").method == "fewshot"
    below = FEWSHOT_BELOW_EXAMPLES_PER_CLASS - 1  # 998 rows: still few enough for contrastive tuning
    assert choose_method({"pos": below, "neg": below}, "bert").method == "fewshot"
    at = FEWSHOT_BELOW_EXAMPLES_PER_CLASS
    assert choose_method({"pos": at, "neg": at}, "bert").method == "head_finetune"
    assert choose_method({"pos": 1000, "neg": 1000}, "bert").method == "head_finetune"
    choice = choose_method({"pos": 8, "neg": 8}, "bert")
    assert choice.method == "fewshot" and "8 examples per class" in choice.reason
    assert choose_method({"pos": 8, "neg": 8}, "llama").method == "lora"


def test_many_classes_with_few_rows_fit_a_head_then_fine_tune():
    at_limit = {f"intent_{i}": 8 for i in range(FEWSHOT_MAX_CLASSES)}
    assert choose_method(at_limit, "bert").method == "fewshot"
    choice = choose_method({**at_limit, "one_more": 8}, "bert")  # 56 rows, one class more
    assert choice.method == "head_finetune" and f"more than {FEWSHOT_MAX_CLASSES} classes" in choice.reason


def test_contrastive_tuning_only_while_its_time_stays_short():
    at_limit = {f"topic_{i}": FEWSHOT_MAX_ROWS // 4 for i in range(4)}
    assert choose_method(at_limit, "bert").method == "fewshot"
    choice = choose_method({**at_limit, "topic_0": FEWSHOT_MAX_ROWS // 4 + 1}, "bert")
    assert choice.method == "head_finetune" and f"more than {FEWSHOT_MAX_ROWS} rows" in choice.reason


def test_label_names_prior_only_for_meaningful_names():
    assert names_are_meaningful(["positive", "negative"])
    assert names_are_meaningful(["book_flight", "Sci/Tech"])
    assert not names_are_meaningful(["0", "1"])
    assert not names_are_meaningful(["LABEL_0", "LABEL_1"])
    assert not names_are_meaningful(["a", "b"])


def test_pair_budget_is_bounded_for_any_size():
    assert pair_budget(16) == 640
    assert pair_budget(200) == 4000
    assert pair_budget(15_000) == pair_budget(1_000_000) == 8000


def test_head_learns_and_seed_api_works(model_path, sentiment_data):
    train_texts, train_labels, eval_texts, eval_labels = sentiment_data
    model = LLMFinetuner(model_path, config=HEAD)
    model.fine_tune(train_texts, train_labels, eval_texts, eval_labels)
    assert isinstance(model.model, SentenceClassifier)
    metrics = model.evaluate_model(eval_texts, eval_labels)
    assert metrics["accuracy"] >= 0.7  # a random tiny encoder's embeddings; chance is 0.5
    assert set(model.predict_labels(["good good good"])) <= {"positive", "negative"}
    assert [event["kind"] for event in model.history] == ["start", "evaluate", "end"]
    assert model.history[1]["metrics"]["accuracy"] == pytest.approx(metrics["accuracy"])


def test_int_labels_come_back_as_given(tiny_bert):
    texts, labels = make_sentiment_data(60, seed=3)
    ints = [7 if label == "positive" else 3 for label in labels]
    model = LLMFinetuner(tiny_bert, config=HEAD)
    model.fine_tune(texts, ints)
    assert set(model.predict(texts)) <= {3, 7}


@pytest.mark.parametrize("config", [HEAD, FEWSHOT], ids=["head", "fewshot"])
def test_save_load_round_trip_predicts_identically(tiny_bert, sentiment_data, tmp_path, config):
    train_texts, train_labels, eval_texts, _ = sentiment_data
    model = LLMFinetuner(tiny_bert, config=config)
    model.fine_tune(train_texts, train_labels)
    saved = model.save(tmp_path / "model")
    assert (saved / HEAD_FILE).is_file() and (saved / "encoder" / "model.safetensors").is_file()
    loaded = LLMFinetuner.load(saved)
    assert isinstance(loaded.model, SentenceClassifier)
    np.testing.assert_allclose(loaded.predict_proba_array(eval_texts), model.predict_proba_array(eval_texts),
                               atol=1e-5)
    assert loaded.config.method == config.method
    assert loaded.method_choice.method == config.method


def test_fewshot_tunes_the_encoder_within_the_pair_budget(tiny_bert, sentiment_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # SetFit writes checkpoints to ./checkpoints unless told otherwise
    train_texts, train_labels, _, _ = sentiment_data
    model = LLMFinetuner(tiny_bert, config=FEWSHOT)
    before = {k: v.clone() for k, v in model.model.base_model.state_dict().items()}
    model.fine_tune(train_texts, train_labels)
    after = model.model.encoder.state_dict()
    assert any(not before[k].equal(after[k]) for k in before if k in after), "the encoder did not change"
    steps = -(-pair_budget(80) // FEWSHOT.batch_size)
    logged = [event for event in model.history if event["kind"] == "log"]
    assert logged and {event["max_steps"] for event in logged} == {steps}
    start, end = model.history[0], model.history[-1]  # one count of steps from start to end, as with the Trainer
    assert (start["kind"], start["max_steps"]) == ("start", steps)
    assert (end["kind"], end["step"], end["max_steps"]) == ("end", steps, steps)
    assert not list(tmp_path.iterdir()), "training wrote files into the working directory"


@pytest.fixture
def tuning_inputs(monkeypatch):
    """The (text, class) pairs contrastive tuning hands to SetFit, filled in when a few-shot run trains."""
    import setfit

    seen = []
    original = setfit.Trainer.train_embeddings

    def recording(self, x_train, y_train, *args, **kwargs):
        seen[:] = zip(x_train, y_train)
        return original(self, x_train, y_train, *args, **kwargs)

    monkeypatch.setattr(setfit.Trainer, "train_embeddings", recording)
    return seen


@pytest.mark.parametrize("named", [True, False], ids=["class names", "class codes"])
def test_fewshot_tunes_with_the_class_names_only_when_they_mean_something(tiny_bert, named, tuning_inputs):
    texts, labels = make_sentiment_data(16, seed=6)
    if not named:
        labels = [1 if label == "positive" else 0 for label in labels]
    model = LLMFinetuner(tiny_bert, config=FEWSHOT)
    model.fine_tune(texts, labels)
    extra = tuning_inputs[len(texts):]
    if named:
        positive = model.label_map.encode(["positive"])[0]
        assert ("It is positive.", positive) in extra and ("positive", positive) in extra
        names = len(LABEL_TEMPLATES) * 2  # two classes
        assert len(extra) == (names + 2 * WORDS_PER_CLASS) * NAME_COPIES
        vocabulary = vocabulary_words(model.tokenizer)
        words = extra[names:names + 2 * WORDS_PER_CLASS]  # "It is <word>.", the words nearest each name
        assert all(text[len("It is "):-1] in vocabulary for text, _ in words)
        assert sorted(label for _, label in words) == [0] * WORDS_PER_CLASS + [1] * WORDS_PER_CLASS
    else:
        assert extra == []


def test_fewshot_leaves_out_the_related_words_once_examples_accumulate(tiny_bert, tuning_inputs):
    per_class = RELATED_WORDS_UP_TO_EXAMPLES_PER_CLASS + 1
    texts, labels = make_sentiment_data(2 * per_class, seed=7)
    LLMFinetuner(tiny_bert, config=FEWSHOT.replace(epochs=1)).fine_tune(texts, labels)
    assert len(tuning_inputs) == len(texts) + len(LABEL_TEMPLATES) * 2 * NAME_COPIES  # the names only


def test_stop_ends_fewshot_tuning_and_keeps_a_usable_model(tiny_bert, sentiment_data):
    train_texts, train_labels, eval_texts, eval_labels = sentiment_data
    stop = threading.Event()
    stop.set()
    model = LLMFinetuner(tiny_bert, config=FEWSHOT)
    model.fine_tune(train_texts, train_labels, eval_texts, eval_labels, stop_event=stop)
    assert model.stopped
    end = model.history[-1]
    assert end["kind"] == "end" and end["stopped"] and 0 < end["step"] < end["max_steps"]
    assert "evaluate" not in [event["kind"] for event in model.history]
    assert len(model.predict(eval_texts)) == len(eval_texts)


def test_auto_records_its_choice_and_reason(tiny_bert, tmp_path):
    texts, labels = make_sentiment_data(20, seed=4)  # 10 per class
    model = LLMFinetuner(tiny_bert)
    model.fine_tune(texts, labels)
    assert model.method_choice.method == "fewshot" and "10 examples per class" in model.method_choice.reason
    assert model.config.method == "fewshot"
    loaded = LLMFinetuner.load(model.save(tmp_path / "auto"))
    assert loaded.method_choice == model.method_choice


def test_head_model_can_be_fine_tuned_further_but_not_with_lora(tiny_bert, sentiment_data, tiny_config):
    train_texts, train_labels, eval_texts, eval_labels = sentiment_data
    model = LLMFinetuner(tiny_bert, config=HEAD)
    model.fine_tune(train_texts, train_labels)
    model.fine_tune(train_texts, train_labels, config=tiny_config)
    assert isinstance(model.model, SentenceClassifier) and model.config.method == "finetune"
    assert model.evaluate_model(eval_texts, eval_labels)["accuracy"] >= 0.8
    with pytest.raises(ConfigError, match="LoRA needs a standard classifier"):
        model.fine_tune(train_texts, train_labels, config=TrainConfig(method="lora"))


def test_head_finetune_fits_the_head_then_trains_every_weight(tiny_bert, sentiment_data, tiny_config, monkeypatch):
    from finetuner.training import embedding_methods
    train_texts, train_labels, eval_texts, eval_labels = sentiment_data
    fitted = []
    real_fit_head = embedding_methods.fit_head
    monkeypatch.setattr(embedding_methods, "fit_head", lambda *a, **k: fitted.append(1) or real_fit_head(*a, **k))
    model = LLMFinetuner(tiny_bert)
    model.fine_tune(train_texts, train_labels, eval_texts, eval_labels,
                    config=tiny_config.replace(method="head_finetune"))
    assert fitted == [1] and isinstance(model.model, SentenceClassifier)
    assert model.config.method == "head_finetune"
    assert [event["kind"] for event in model.history].count("evaluate") == tiny_config.epochs
    assert model.evaluate_model(eval_texts, eval_labels)["accuracy"] >= 0.8


# ---------------------------------------------------------------------------------------------
# The registry: one registration declares a method everywhere
# ---------------------------------------------------------------------------------------------

def test_registry_views_keep_the_names_the_app_and_the_cli_show():
    from finetuner.methods import registry
    assert registry.names() == ("auto", "finetune", "head", "fewshot", "head_finetune", "lora")
    assert registry.METHOD_NAMES == {"auto": "automatic", "finetune": "full fine-tuning", "head": "embedding head",
                                     "fewshot": "few-shot (SetFit)",
                                     "head_finetune": "embedding head, then full fine-tuning", "lora": "LoRA adapter"}
    assert registry.ui_choices() == [
        ("Automatic", "auto"), ("Full fine-tuning", "finetune"), ("Embedding head (fast)", "head"),
        ("Few-shot (SetFit)", "fewshot"), ("Head, then full fine-tuning", "head_finetune"),
        ("LoRA (adapter + head)", "lora")]
    assert registry.method_defaults() == METHOD_DEFAULTS
    assert [m.name for m in registry.methods() if not m.has_epochs] == ["head"]
    assert [m.name for m in registry.methods() if m.sentence_classifier] == ["head", "fewshot", "head_finetune"]
    assert [m.name for m in registry.methods() if m.adapter] == ["lora"]
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(registry.get("head"))


@pytest.fixture
def registered(monkeypatch):
    """A method added for one test, the way a new module would add it (one register call)."""
    from finetuner.methods import registry
    from finetuner.methods.base import Method
    from finetuner.methods.head import train_on_embeddings

    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "METHOD_NAMES", dict(registry.METHOD_NAMES))
    return registry.register(Method("centroid", "class centroids", "Class centroids", "a head on embeddings",
                                    epochs=1.0, batch_size=32, train=train_on_embeddings, has_epochs=False,
                                    sentence_classifier=True))


def test_a_registered_method_is_accepted_everywhere_and_trains(registered, tiny_bert, sentiment_data):
    from finetuner.cli import build_parser
    from finetuner.cli.settings import build_config, flag_settings
    from finetuner.methods import registry

    config = TrainConfig(method="centroid")
    assert (config.epochs, config.batch_size) == (1.0, 32)
    assert registry.names()[-1] == "centroid" and registry.ui_choices()[-1] == ("Class centroids", "centroid")
    assert registry.METHOD_NAMES["centroid"] == "class centroids"
    parser = build_parser()
    args = parser.parse_args(["train", "--data", "x.csv", "--method", "centroid"])
    assert build_config(flags=flag_settings(args)).method == "centroid"
    train_texts, train_labels, eval_texts, eval_labels = sentiment_data
    model = LLMFinetuner(tiny_bert, config=config)
    model.fine_tune(train_texts, train_labels, eval_texts, eval_labels)
    assert isinstance(model.model, SentenceClassifier) and model.config.method == "centroid"
    assert model.evaluate_model(eval_texts, eval_labels)["accuracy"] >= 0.7


def test_trained_classifier_saves_and_loads_on_its_own(tiny_bert, sentiment_data, tmp_path):
    from finetuner.classifier import FORMAT_VERSION, METADATA_FILE, TextClassifier
    from finetuner.finetuner import FORMAT_VERSION as FACADE_FORMAT_VERSION

    train_texts, train_labels, eval_texts, _ = sentiment_data
    model = LLMFinetuner(tiny_bert, config=HEAD)
    model.fine_tune(train_texts, train_labels)
    assert isinstance(model.classifier, TextClassifier) and model.classifier.model is model.model
    saved = model.save(tmp_path / "model")
    assert json_of(saved / METADATA_FILE)["format_version"] == FORMAT_VERSION == FACADE_FORMAT_VERSION
    loaded = TextClassifier.load(saved)
    assert loaded.labels == model.labels and loaded.method_choice == model.method_choice
    np.testing.assert_allclose(loaded.predict_proba_array(eval_texts), model.predict_proba_array(eval_texts),
                               atol=1e-5)
    assert loaded.predict_labels(eval_texts[:3]) == model.predict_labels(eval_texts[:3])
    assert loaded.explain(eval_texts[0]).label == model.explain(eval_texts[0]).label
    again = TextClassifier.load(loaded.save(tmp_path / "again"))  # a loaded classifier saves the same format
    assert again.base_model == model.model_name and again.config == model.config


def json_of(path):
    import json
    return json.loads(path.read_text(encoding="utf-8"))
