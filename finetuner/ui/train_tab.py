"""Train tab: pick a model and settings, start and stop training, follow progress, loss and metrics live."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import gradio as gr

from ..config import PRESETS, TrainConfig
from ..errors import ConfigError, FinetunerError
from .. import methods
from ..gguf_models import OFFLINE_LLMS, is_gguf_path, pulled_gguf
from ..models import DEFAULT_MODEL, KNOWN_HUB_DECODERS, KNOWN_HUB_MODELS, resolve_model
from ..prepare import prepare
from ..runner import Job, TrainSpec
from ..tasks import TASK_NAMES
from .common import (AppContext, TableData, check_model_name, from_page, kept_outputs, local_models_allowed,
                     user_errors, warn)
from .data_tab import DataTab
from .progress_view import (UPDATE_INTERVAL_S, ProgressView, failed_bar, idle_bar, loss_chart)

if TYPE_CHECKING:  # importing it would load the transformers Trainer before the first page is served
    pass

METHOD_CHOICES = methods.ui_choices()


_MODEL_INFO = ("The bundled model and pulled offline LLMs work offline; Hub models need a network connection. Decoder "
               "LLMs train with LoRA. ")
_METHOD_INFO = ("Automatic picks one from your data and model, and says why when training starts. Full fine-tuning "
                "trains every weight: for many examples per class. Embedding head fits a classifier on the model's "
                "sentence embeddings in seconds: the fastest, a little less accurate. Few-shot (SetFit) first tunes "
                "the model on pairs of examples (and on your class names, when they are words), then fits that head: "
                "the best for a few examples per class. LoRA trains a small adapter and the classification head: for "
                "decoder LLMs, less memory, small saved models (they need the base model to load).")
# The hyperparameter fields: (setting, label, integer?, elem_id); "0 = ..." where 0 means automatic or off.
_HYPER_FIELDS = (
    (("epochs", "Epochs (0 = automatic: the method's default)", False, "hp-epochs"),
     ("learning_rate", "Learning rate (0 = automatic, from the model size and method)", False, None),
     ("batch_size", "Batch size (0 = automatic: the method's default)", True, "hp-batch"),
     ("max_length", "Max tokens per text (0 = from the data)", True, None)),
    (("warmup_ratio", "Warm-up ratio", False, None), ("weight_decay", "Weight decay", False, None),
     ("seed", "Seed", True, None), ("early_stopping_patience", "Early-stopping patience (0 = off)", True, None)))
# What each preset costs, said before Start (config.PRESETS; measured: bench/results/auto.md#presets).
PRESET_INFO = ("Automatic tries the cheapest methods first and keeps the best on rows held out from training. "
               "fast: about 1 minute on 2 CPU cores for up to ~1,000 short texts · balanced: about 10 minutes · "
               "best: no time limit, up to 6 epochs with early stopping. A GPU fits more into the same time.")
# The task choices (TrainConfig.task): (label, value); "auto" reads it from the label column, as the Data tab shows.
TASK_CHOICES = [("Detect from the label column", "auto"), ("One label per text", "single_label"),
                ("Several labels per text (cells like a;b)", "multi_label"),
                ("A number per text (regression)", "regression")]
_TASK_INFO = ("What the labels are. Detect reads it from the label column (the Data tab's checks say what it found "
              "and why); choose another to override it, e.g. numbers 1-5 as classes rather than as a score.")
# The API's /train parameters after the Data tab's are the form's fields by name (TrainView.settings): model_name,
# preset_name, the hyperparameters (_FIELDS), method, then these, then task. Names and order are public: clients use
# them.
_LORA_SETTINGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")


@dataclass
class TrainView:
    """The Train tab's components. ``settings`` are the form's fields by /train parameter name, in API order."""

    model: gr.Dropdown
    preset: gr.Radio
    method: gr.Radio
    lora_box: gr.Accordion
    settings: Dict[str, Any]
    start: gr.Button
    stop: gr.Button
    progress: gr.HTML
    loss_plot: gr.HTML
    epoch_table: gr.Dataframe
    log: gr.Textbox

    @property
    def hyper(self) -> List[Any]:
        return [self.settings[name] for name in _FIELDS]

    def outputs(self, active_run: gr.State) -> List[Any]:
        """What a training streams: progress, loss, epochs, log, the buttons and the active run."""
        return [self.progress, self.loss_plot, self.epoch_table, self.log, self.start, self.stop, active_run]


def build(ctx: AppContext, data: DataTab) -> None:
    view = layout(ctx)
    wire(TrainHandlers(ctx, default_method(ctx.default_model)), view, data)


def layout(ctx: AppContext) -> TrainView:
    """The tab's components, the form filled in with the "fast" preset for the default model's method."""
    with gr.Row():
        model = gr.Dropdown(model_choices(ctx.default_model), value=ctx.default_model, allow_custom_value=True,
                            label="Model", scale=3, elem_id="train-model",
                            info=_MODEL_INFO + ("Or type any Hub id, a local model folder or a .gguf file."
                                                if local_models_allowed() else "Or type any Hub id."))
        preset = gr.Radio(list(PRESETS), value="fast", label="Preset", scale=2, elem_id="train-preset",
                          info=PRESET_INFO)
    initial_method = default_method(ctx.default_model)
    method = gr.Radio(METHOD_CHOICES, value=initial_method, label="Method", elem_id="train-method",
                      info=_METHOD_INFO)
    lora_box, lora = _lora_fields(shows_lora_settings(initial_method))
    task = gr.Dropdown(TASK_CHOICES, value="auto", label="Task", info=_TASK_INFO, elem_id="train-task")
    hyper = _hyper_fields(dict(zip(_FIELDS, _form("fast", initial_method))))
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", interactive=False, elem_id="train-stop")
    gr.Markdown("One training runs at a time on this server; others wait in line. Closing or reloading this page "
                "stops your training. Completed runs stay listed on the Export tab.")
    progress = gr.HTML(idle_bar("Ready. Press Start training to fine-tune on the table from the Data tab."),
                       elem_id="train-progress")
    with gr.Row():
        # An SVG drawn here, not a gr.LinePlot: that one shows no markers (a single evaluation point is
        # invisible) and, in Gradio 6.31, a series that appears mid-training only after a tab switch.
        with gr.Column(scale=3):  # gr.HTML alone does not take its share of the row
            loss_plot = gr.HTML(loss_chart([]), elem_id="train-loss")
        epoch_table = gr.Dataframe(ProgressView.empty_epochs(), label="Evaluation after each epoch", interactive=False,
                                   scale=2, elem_id="train-epochs")
    log = gr.Textbox(label="Log (newest first)", lines=6, max_lines=6, interactive=False, elem_id="train-log")
    settings = {"model_name": model, "preset_name": preset, **hyper, "method": method, **lora, "task": task}
    return TrainView(model, preset, method, lora_box, settings, start, stop, progress, loss_plot, epoch_table, log)


def _lora_fields(visible: bool) -> Tuple[gr.Accordion, Dict[str, Any]]:
    defaults = TrainConfig()
    with gr.Accordion("LoRA settings", visible=visible, elem_id="train-lora") as box:
        with gr.Row():
            fields = [gr.Number(defaults.lora_r, label="Rank r", precision=0, elem_id="lora-r"),
                      gr.Number(defaults.lora_alpha, label="Alpha (the update is scaled by alpha / r)"),
                      gr.Number(defaults.lora_dropout, label="Dropout"),
                      gr.Textbox("", label="Target modules (comma-separated; empty = the model's defaults)",
                                 placeholder="e.g. q_proj, v_proj", elem_id="lora-targets")]
    return box, dict(zip(_LORA_SETTINGS, fields))


def _hyper_fields(values: Dict[str, Any]) -> Dict[str, gr.Number]:
    """The hyperparameter fields. No minimum/maximum: TrainConfig's checks give messages that name the setting."""
    fields: Dict[str, gr.Number] = {}
    with gr.Accordion("Hyperparameters", open=False):
        for row in _HYPER_FIELDS:
            with gr.Row():
                for name, label, integer, elem_id in row:
                    fields[name] = gr.Number(values[name], label=label, elem_id=elem_id,
                                             **({"precision": 0} if integer else {}))
    return fields


def shows_lora_settings(method: Optional[str]) -> bool:
    """Whether a method has the LoRA settings (it trains an adapter)."""
    found = methods.find(method)
    return bool(found and found.adapter)


class TrainHandlers:
    """The Train tab's event handlers: plain values in, updates out."""

    def __init__(self, ctx: AppContext, initial_method: str):
        self.ctx = ctx
        self.initial_method = initial_method  # the method the form starts with (an API call's defaults too)

    def config(self, settings: Dict[str, Any], eval_fraction: float) -> Tuple[TrainConfig, Dict[str, Any]]:
        """The TrainConfig of a /train call's settings (the form's fields by parameter name), and its method
        settings. An API call gets the preset's values for the fields it leaves at the form's defaults (see
        :func:`preset_settings`)."""
        named = {name: settings.get(name) for name in _FIELDS}
        method = settings.get("method") or "auto"
        if not from_page():  # on the page, choosing a preset has already filled in the fields
            named = preset_settings(settings["preset_name"], named, method, self.initial_method)
        method_settings = lora_settings(method, *(settings.get(name) for name in _LORA_SETTINGS))
        budget = PRESETS.get(settings.get("preset_name"), {}).get("time_budget")  # the preset's, not a field
        task = settings.get("task") or "auto"
        return _config(named, eval_fraction, {**method_settings, "task": task}, budget), method_settings

    def model_name(self, name: Optional[str]) -> str:
        """The model to train: checked now (not after waiting in the queue), the app's default when empty."""
        name = (name or "").strip() or self.ctx.default_model
        check_model_name(name, [value for _, value in model_choices(self.ctx.default_model)])  # local models off
        resolve_model(name)  # an unknown or unreachable model fails now, not after waiting in the queue
        return name

    @user_errors(keep=lambda message: kept_outputs(7, {0: failed_bar(message)}))
    def train(self, table: TableData, eval_table: Optional[TableData], text_column: str, label_column: str,
              eval_fraction: float, request: gr.Request = None, **settings: Any) -> Iterator[Tuple[Any, ...]]:
        """Train on the Data tab's table; streams progress, the loss curve, per-epoch metrics and a log.

        ``settings`` are the form's fields by name: ``model_name``, ``preset_name`` (fast, balanced, best: a
        hyperparameter given with another value than the form's default overrides the preset's), the
        hyperparameters, ``method`` (one of :data:`~finetuner.config.METHODS`; "auto" is chosen from the data and
        the model, shown when training starts), the ``lora_*`` settings (empty: the defaults) and ``task`` (one of
        :data:`~finetuner.tasks.TASKS`; "auto", the default, reads it from the label column)."""
        config, method_settings = self.config(settings, eval_fraction)
        model_name = self.model_name(settings.get("model_name"))
        preset_name = settings["preset_name"]
        checked = prepare(table.frame, text_column, label_column, eval_frame=eval_table.frame if eval_table else None,
                          eval_fraction=eval_fraction, seed=config.seed, source=table.name, task=config.task)
        as_preset = config == TrainConfig.from_preset(preset_name, eval_fraction=eval_fraction, **method_settings)
        task_line = ""
        if checked.task is not None:  # trained as the task the labels were read as, as the command line does
            config = config.replace(task=checked.task.task)
            task_line = f"Task: {TASK_NAMES[checked.task.task]} ({checked.task.reason})."
        job = self.ctx.runner.submit(TrainSpec(model_name, config, checked,
                                               preset_name if as_preset else f"{preset_name} (edited)",
                                               run_owner=self.ctx.owner(request)),
                                     owner=getattr(request, "session_hash", None) or "")  # who may stop it
        yield from self.follow(job, ProgressView(config, task_line))

    def follow(self, job: Job, view: "ProgressView") -> Iterator[Tuple[Any, ...]]:
        """Stream a job's progress a few times a second until it ends; a page gone away stops it."""
        try:
            yield view.outputs(job, self.ctx.runner.position(job))
            last = time.monotonic()
            while True:
                finished = job.finished
                view.drain(job.events)
                if finished:
                    break
                if time.monotonic() - last >= UPDATE_INTERVAL_S:
                    last = time.monotonic()
                    yield view.outputs(job, self.ctx.runner.position(job))
            yield view.outputs(job, 0)
        finally:
            if not job.finished:  # the page went away or the event was cancelled: free the trainer for others
                job.stop()
        if job.status == "failed":
            raise FinetunerError(job.error or "Training failed.")

    def stop(self, request: gr.Request) -> None:
        """Stop this session's training at its next step (or cancel it while it is queued)."""
        if self.ctx.runner.stop(getattr(request, "session_hash", None) or ""):
            gr.Info("Stopping at the next training step…")
        else:
            gr.Info("No training of yours is running.")

    @staticmethod
    def model_chosen(name: str) -> Any:
        """A decoder LLM selects LoRA, another model Automatic; an offline LLM not pulled yet says how."""
        name = (name or "").strip()
        if name.lower() in OFFLINE_LLMS and pulled_gguf(name) is None:
            warn(f"{name} is not on this machine yet: run `python -m finetuner models pull {name.lower()}` "
                 "where the app runs, then train.")
        return default_method(name)

    @staticmethod
    def method_chosen(chosen: str, preset_name: str) -> Tuple[Any, ...]:
        """Show the LoRA settings for LoRA, and the preset's epochs and batch size for the method."""
        filled = dict(zip(_FIELDS, _form(preset_name or "fast", chosen)))
        return gr.Accordion(visible=shows_lora_settings(chosen)), filled["epochs"], filled["batch_size"]

    def refresh_models(self) -> Any:
        """On page load: mark offline LLMs pulled since the app started."""
        return gr.Dropdown(choices=model_choices(self.ctx.default_model))


def wire(handlers: TrainHandlers, view: TrainView, data: DataTab) -> None:
    private = {"api_visibility": "private"}
    view.model.change(handlers.model_chosen, view.model, view.method, **private)
    view.method.change(handlers.method_chosen, [view.method, view.preset],
                       [view.lora_box, view.settings["epochs"], view.settings["batch_size"]], **private)
    if handlers.ctx.session_started is not None:
        handlers.ctx.session_started.then(handlers.refresh_models, None, view.model, **private)
    view.preset.input(_form, [view.preset, view.method], view.hyper, **private)
    # /train's parameters: the Data tab's table and columns, then the form's settings by name (see _MODEL_SETTINGS).
    view.start.click(handlers.train, [data.table, data.eval_table, data.text_column, data.label_column,
                                      data.eval_fraction], view.outputs(handlers.ctx.active_run),
                     inputs_kwargs=view.settings, api_name="train", show_progress="hidden", concurrency_limit=16)
    view.stop.click(handlers.stop, None, None, api_name="stop", concurrency_limit=None)


def model_choices(default: str) -> List[Tuple[str, str]]:
    """The model picker's (label, value) pairs: the app's default and the bundled model, the offline decoder
    LLMs (marked "offline" once pulled, else with the command that pulls them), then Hub encoders and decoders."""
    choices = [(f"{DEFAULT_MODEL} · bundled, works offline", DEFAULT_MODEL)]
    if default != DEFAULT_MODEL:
        choices.insert(0, (f"{default} · this app's default", default))
    for llm in OFFLINE_LLMS.values():
        where = "offline" if pulled_gguf(llm.name) else f"run: python -m finetuner models pull {llm.name}"
        choices.append((f"{llm.name} · {llm.description} · {where} · LoRA", llm.name))
    choices += [(f"{name} · {about} · needs the Hub", name) for name, about in KNOWN_HUB_MODELS.items()]
    choices += [(f"{name} · {about} · needs the Hub · LoRA", name) for name, about in KNOWN_HUB_DECODERS.items()]
    return [(label, value) for i, (label, value) in enumerate(choices)  # the default listed once, first
            if i == 0 or value != default]


def is_decoder(name: str) -> bool:
    """Whether ``name`` is a decoder LLM (trained with LoRA by default): an offline LLM, a .gguf file, a listed
    Hub decoder, or (where local models are allowed) a model folder whose config names a *ForCausalLM class."""
    name = (name or "").strip()
    if name.lower() in OFFLINE_LLMS or is_gguf_path(name) or name in KNOWN_HUB_DECODERS:
        return True
    if not name or not local_models_allowed():
        return False
    try:
        config = json.loads((Path(name).expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return any(str(a).endswith("ForCausalLM") for a in architectures or [])


def default_method(name: str) -> str:
    """The method the form selects for a model: LoRA for a decoder LLM, else "auto"."""
    return "lora" if is_decoder(name) else "auto"


def lora_settings(method: Optional[str], r: Any, alpha: Any, dropout: Any, targets: Optional[str]) -> Dict[str, Any]:
    """TrainConfig's method and LoRA settings from the form or an API call (empty: TrainConfig's defaults;
    target modules as comma-separated text, empty for the model family's defaults). TrainConfig checks them."""
    defaults = TrainConfig()
    given = {"lora_r": r, "lora_alpha": alpha, "lora_dropout": dropout}
    settings: Dict[str, Any] = {name: getattr(defaults, name) if value is None or value == "" else value
                                for name, value in given.items()}
    if isinstance(settings["lora_r"], float) and settings["lora_r"].is_integer():
        settings["lora_r"] = int(settings["lora_r"])
    return {"method": method or "auto", **settings, "lora_target_modules": (targets or "").strip() or None}


def _form(name: str, method: str = "auto") -> List[Any]:
    """The hyperparameter fields as a preset fills them in for a method (0 for "automatic" or "off")."""
    config = TrainConfig.from_preset(name, method=method or "auto")
    return [config.epochs or 0, config.learning_rate or 0, config.batch_size or 0, config.max_length or 0,
            config.warmup_ratio, config.weight_decay, config.seed, config.early_stopping_patience or 0]


_FIELDS = ("epochs", "learning_rate", "batch_size", "max_length", "warmup_ratio", "weight_decay", "seed",
           "early_stopping_patience")


def preset_settings(preset: str, named: Dict[str, Any], method: str = "auto",
                    form_method: str = "auto") -> Dict[str, Any]:
    """The settings of an API call: the preset's for the method (each method has its own epochs and batch size),
    except those given with a value other than the form's default (the "fast" preset for ``form_method``, the
    method the form starts with)."""
    default = dict(zip(_FIELDS, _form("fast", form_method)))
    chosen = dict(zip(_FIELDS, _form(preset, method)))
    return {name: chosen[name] if value is None or value == "" or value == default[name] else value
            for name, value in named.items()}


def _config(named: Dict[str, Any], eval_fraction: float, method_settings: Dict[str, Any],
            time_budget: Optional[float] = None) -> TrainConfig:
    """A TrainConfig from the hyperparameter fields (0 means "automatic" or "off" where the labels say so), the
    method's settings (see :func:`lora_settings`) with the task, and the preset's time budget."""
    empty = [name for name, value in named.items() if value is None or value == ""]
    if empty:
        raise ConfigError(f"Fill in the hyperparameter(s): {', '.join(empty)}.")
    return TrainConfig(
        epochs=float(named["epochs"]) or None, learning_rate=float(named["learning_rate"]) or None,
        batch_size=int(named["batch_size"]) or None, max_length=int(named["max_length"]) or None,
        warmup_ratio=float(named["warmup_ratio"]), weight_decay=float(named["weight_decay"]),
        seed=int(named["seed"]), early_stopping_patience=int(named["early_stopping_patience"]) or None,
        eval_fraction=float(eval_fraction), time_budget=time_budget, **method_settings)
