"""The Train tab's model picker (offline LLMs pulled or not, Hub encoders and decoders), the method radio (which
models select LoRA, "auto" and its automatic epochs and batch size), the method shown while training, the LoRA
settings of a form or an API call, and the model card of a LoRA run."""

from __future__ import annotations

import pytest

from finetuner.config import METHOD_DEFAULTS, METHODS, PRESETS, TrainConfig
from finetuner.errors import ConfigError
from finetuner.export import model_card
from finetuner.gguf_models import OFFLINE_LLMS
from finetuner.method_choice import MethodChoice
from finetuner.models import DEFAULT_MODEL, KNOWN_HUB_DECODERS, KNOWN_HUB_MODELS
from finetuner.runner import Job, TrainSpec
from finetuner.runs import RunRecord
from finetuner.training.progress import ProgressEvent
from finetuner.ui.progress_view import ProgressView
from finetuner.ui.train_tab import (_FIELDS, METHOD_CHOICES, _config, _form, default_method, is_decoder,
                                    lora_settings, model_choices)


def _labels(default: str = DEFAULT_MODEL) -> dict:
    return {value: label for label, value in model_choices(default)}


def test_the_picker_marks_an_offline_llm_by_whether_it_was_pulled(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNER_CACHE_DIR", str(tmp_path))
    choices = model_choices(DEFAULT_MODEL)
    assert choices[0] == (f"{DEFAULT_MODEL} · bundled, works offline", DEFAULT_MODEL)
    values = [value for _, value in choices]
    assert values == [DEFAULT_MODEL, *OFFLINE_LLMS, *KNOWN_HUB_MODELS, *KNOWN_HUB_DECODERS]
    labels = _labels()
    assert "run: python -m finetuner models pull smollm2" in labels["smollm2"]
    assert "offline" not in labels["smollm2"].replace("works offline", "")
    assert all(labels[name].endswith("needs the Hub") for name in KNOWN_HUB_MODELS)
    assert all(labels[name].endswith("needs the Hub · LoRA") for name in KNOWN_HUB_DECODERS)

    pulled = tmp_path / "models" / OFFLINE_LLMS["smollm2"].file_name  # where `models pull` puts the .gguf
    pulled.parent.mkdir(parents=True)
    pulled.write_bytes(b"GGUF")
    label = _labels()["smollm2"]
    assert "· offline · LoRA" in label and "models pull" not in label


def test_the_apps_own_default_comes_first(tiny_bert):
    values = [value for _, value in model_choices(tiny_bert)]
    assert values[:2] == [tiny_bert, DEFAULT_MODEL]


def test_decoder_models_select_lora(tiny_llama, tiny_bert, monkeypatch):
    assert is_decoder("smollm2") and is_decoder("SmolLM2") and is_decoder("/models/any.gguf")
    assert is_decoder("Qwen/Qwen2.5-0.5B") and is_decoder(tiny_llama)  # a local folder: its config says so
    assert not is_decoder(DEFAULT_MODEL) and not is_decoder(tiny_bert) and not is_decoder("")
    assert not is_decoder("no/such/folder")
    monkeypatch.setenv("FINETUNER_ALLOW_LOCAL_MODELS", "0")  # no file system look-ups for a public server
    assert not is_decoder(tiny_llama) and is_decoder("smollm2")


def test_lora_settings_from_the_form_or_an_api_call():
    defaults = TrainConfig()
    assert lora_settings(None, None, "", None, None) == {
        "method": "auto", "lora_r": defaults.lora_r, "lora_alpha": defaults.lora_alpha,
        "lora_dropout": defaults.lora_dropout, "lora_target_modules": None}
    settings = lora_settings("lora", 16.0, 32, 0.1, " q_proj, v_proj ")
    assert settings["lora_r"] == 16 and isinstance(settings["lora_r"], int)
    config = TrainConfig(**settings)
    assert config.method == "lora" and config.lora_target_modules == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError, match="lora_r"):
        TrainConfig(**lora_settings("lora", 8.5, None, None, ""))
    with pytest.raises(ConfigError, match="lora_target_modules"):
        TrainConfig(**lora_settings("lora", None, None, None, "q_proj; drop table"))


def test_the_method_radio_offers_every_method_and_starts_with_auto_or_lora(tiny_bert, tiny_llama):
    assert [value for _, value in METHOD_CHOICES] == list(METHODS)
    assert default_method(DEFAULT_MODEL) == default_method(tiny_bert) == "auto"
    assert default_method("smollm2") == default_method(tiny_llama) == "lora"


def _fields(preset: str, method: str) -> dict:
    return dict(zip(_FIELDS, _form(preset, method)))


def test_auto_leaves_epochs_and_batch_size_at_0_for_the_chosen_methods_defaults():
    balanced = _fields("balanced", "auto")
    assert (balanced["epochs"], balanced["batch_size"], balanced["learning_rate"]) == (0, 0, 0)
    assert _fields("fast", "auto")["epochs"] == PRESETS["fast"]["epochs"]  # a preset's own epochs stay
    head = _fields("balanced", "head")
    assert (head["epochs"], head["batch_size"]) == (METHOD_DEFAULTS["head"]["epochs"],
                                                    METHOD_DEFAULTS["head"]["batch_size"])
    config = _config(balanced, 0.2, lora_settings("auto", None, None, None, ""))
    assert (config.method, config.epochs, config.batch_size) == ("auto", None, None)
    fewshot = _config(balanced, 0.2, lora_settings("fewshot", None, None, None, ""))  # 0: the method's default
    assert (fewshot.epochs, fewshot.batch_size) == (METHOD_DEFAULTS["fewshot"]["epochs"],
                                                    METHOD_DEFAULTS["fewshot"]["batch_size"])
    with pytest.raises(ConfigError, match="epochs"):
        _config({**balanced, "epochs": -1}, 0.2, lora_settings("auto", None, None, None, ""))


def test_the_progress_area_says_which_method_trains_and_why():
    job = Job(TrainSpec("some/model", TrainConfig(), None))
    job.status = "running"
    view = ProgressView(TrainConfig.from_preset("balanced"))
    assert "progress-method" not in view.outputs(job, 0)[0]  # before the model has loaded
    reason = "8 examples per class (median over 2 classes, 16 rows): with so few, a classifier wins."
    job.method_choice = MethodChoice("head", reason)
    view.add(ProgressEvent("start", 0, 1, 0.0, 0.0))
    shown = view.outputs(job, 0)[0]
    assert f"Method: embedding head — {reason}" in shown and "epoch 0.00 ·" in shown  # the head has no epochs
    job.method_choice = MethodChoice("finetune", "enough examples")
    shown = view.outputs(job, 0)[0]
    assert "Method: full fine-tuning — enough examples" in shown
    assert f"epoch 0.00 of {METHOD_DEFAULTS['finetune']['epochs']:g}" in shown  # the chosen method's epochs


def test_a_stopped_run_shows_as_stopped_only_once_the_buttons_let_you_start_again():
    job = Job(TrainSpec("some/model", TrainConfig(), None))
    view = ProgressView(TrainConfig.from_preset("balanced"))
    view.add(ProgressEvent("start", 3, 10, 0.3, 1.0))
    job.status = "stopped"  # the runner sets the status, then records the run, then lets the job go
    html, *_, start, stop, _ = view.outputs(job, 0)
    assert 'data-state="running"' in html and not start.interactive and stop.interactive
    job.done.set()
    html, *_, start, stop, _ = view.outputs(job, 0)
    assert 'data-state="stopped"' in html and start.interactive and not stop.interactive


def test_the_model_card_of_a_lora_run_says_it_holds_the_adapter_only():
    record = RunRecord(id="20260101-000000-abcdef", status="completed", base_model="HuggingFaceTB/SmolLM2-135M",
                       created_at="", config=TrainConfig(method="lora").to_dict(), labels=["neg", "pos"])
    card = model_card(record)
    assert "library_name: peft" in card and "base_model: HuggingFaceTB/SmolLM2-135M" in card
    assert "only the LoRA adapter and the classification head" in card
    assert "needs the base model `HuggingFaceTB/SmolLM2-135M`" in card and "| method | lora |" in card
    assert "pipeline(" not in card
    full = model_card(RunRecord(id=record.id, status="completed", base_model="bert-base-uncased", created_at="",
                                config=TrainConfig().to_dict(), labels=["neg", "pos"]))
    assert "Method: full fine-tuning" in full and "LoRA" not in full
