"""Shared fixtures: tiny BERT/DistilBERT models built locally (hidden 32, 2 layers) and small labelled data."""

from __future__ import annotations

import contextlib
import gc
import random
import socket
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (BertConfig, BertModel, DistilBertConfig, DistilBertModel, PreTrainedTokenizerFast)

from finetuner import TrainConfig

POSITIVE = ["good", "great", "love", "excellent", "fantastic", "wonderful", "happy", "best", "enjoyed", "superb"]
NEGATIVE = ["bad", "awful", "terrible", "hate", "worst", "boring", "sad", "poor", "dull", "horrible"]
NEUTRAL = ["okay", "average", "fine", "plain", "ordinary"]
FILLER = ["the", "movie", "film", "was", "is", "a", "this", "it", "i", "really", "very", "product", "service",
          "food", "day", "and", "so", "quite", "what", "experience", "overall", "show", "book"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Small and fast: a full train/evaluate/predict cycle on a tiny model takes seconds.
TINY_CONFIG = TrainConfig(method="finetune", epochs=8, learning_rate=3e-3, batch_size=8, warmup_ratio=0.0, seed=0)


def build_tokenizer(model_input_names: List[str], max_length: int = 64) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer over the fixture vocabulary, built with the `tokenizers` library."""
    vocab = {token: i for i, token in enumerate(SPECIAL + sorted(set(POSITIVE + NEGATIVE + NEUTRAL + FILLER)))}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_length, model_input_names=model_input_names)


def build_tiny_model(directory: Path, architecture: str = "bert", max_positions: int = 64) -> Path:
    """Save a randomly initialised tiny encoder (no classification head) and its tokenizer to ``directory``."""
    torch.manual_seed(0)  # the same tiny model in every test session
    if architecture == "bert":
        tokenizer = build_tokenizer(["input_ids", "token_type_ids", "attention_mask"], max_positions)
        model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=max_positions))
    elif architecture == "distilbert":
        tokenizer = build_tokenizer(["input_ids", "attention_mask"])
        model = DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2,
                                                 hidden_dim=64, max_position_embeddings=64))
    else:
        raise ValueError(architecture)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_app(runs_dir: Path, model: str) -> Iterator[str]:
    """The Gradio app served in this process on a free localhost port; yields its URL."""
    from finetuner.ui import build_app
    app = build_app(runs_dir=runs_dir, model=model)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def make_sentiment_data(n: int, seed: int = 0, classes: Tuple[str, ...] = ("positive", "negative")
                        ) -> Tuple[List[str], List[str]]:
    """Short texts whose class is given by one sentiment word among neutral filler words."""
    rng = random.Random(seed)
    words = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}
    texts, labels = [], []
    for i in range(n):
        label = classes[i % len(classes)]
        filler = rng.sample(FILLER, 4)
        filler.insert(rng.randrange(5), rng.choice(words[label]))
        texts.append(" ".join(filler))
        labels.append(label)
    return texts, labels


def make_multi_label_data(n: int, seed: int = 0) -> Tuple[List[str], List[str]]:
    """Short texts with one or two labels each: ``praise;recommend`` for a positive word, ``complaint`` for a
    negative one. (The tiny models learn one direction well; two independent labels would need a real model.)"""
    texts, labels = make_sentiment_data(n, seed)
    return texts, ["praise;recommend" if label == "positive" else "complaint" for label in labels]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine two threads per
    process make training 10-20 times slower. Tests on real models take all threads back (``all_threads``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def all_threads(_one_torch_thread):
    """Every CPU thread, for the duration of a module that trains a real model."""
    torch.set_num_threads(_one_torch_thread)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert"))


@pytest.fixture(scope="session")
def tiny_bert_256(tmp_path_factory) -> str:
    """The tiny BERT with 256 positions, for tests of the length limit."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-bert-256"), "bert", max_positions=256))


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-distilbert"), "distilbert"))


@pytest.fixture
def sentiment_data():
    """(train_texts, train_labels, eval_texts, eval_labels) with string labels."""
    train = make_sentiment_data(80, seed=1)
    evaluation = make_sentiment_data(40, seed=2)
    return train[0], train[1], evaluation[0], evaluation[1]


@pytest.fixture
def tiny_config() -> TrainConfig:
    return TINY_CONFIG.replace()


DECODER_SPECIAL = ["<unk>", "<s>", "</s>"]


def build_decoder_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer like a decoder LLM's: a BOS token in front, an EOS token, and no pad token."""
    words = sorted(set(POSITIVE + NEGATIVE + NEUTRAL + FILLER))
    vocab = {token: i for i, token in enumerate(DECODER_SPECIAL + words)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=64, model_input_names=["input_ids", "attention_mask"])


def build_tiny_decoder(directory: Path, architecture: str = "llama") -> Path:
    """Save a randomly initialised tiny decoder LLM (Llama; hidden 32, 2 layers) and its tokenizer, which has
    no pad token, as the tokenizers of most decoder LLMs.

    Only Llama: for model_type "qwen2", transformers 5 loads any tokenizer as its Qwen2Tokenizer, which adds
    an <|endoftext|> token outside this vocabulary and splits words differently."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = build_decoder_tokenizer()
    sizes = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=None,
                 tie_word_embeddings=False)
    if architecture != "llama":
        raise ValueError(architecture)
    model = LlamaForCausalLM(LlamaConfig(**sizes))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    return str(build_tiny_decoder(tmp_path_factory.mktemp("tiny-llama"), "llama"))


# --------------------------------------------------------------------------------------- browser tests

E2E_DIR = Path(__file__).resolve().parent / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def pytest_collection_modifyitems(items):
    """Every test in tests/e2e is a browser (e2e) test, skipped with the install command where Chromium is missing."""
    missing = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian Chromium is not installed at "
                                 "/usr/bin/chromium (apt-get install chromium chromium-driver)")
    for item in items:
        if Path(str(item.fspath)).parent == E2E_DIR:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(missing)


SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def page(browser):
    """A fresh page of the module's browser (90 s for slow steps such as training); screenshots go to
    ``SCREENSHOTS``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(90_000)
    yield page
    page.close()


def screenshot(page, name: str) -> None:
    """The whole page as ``SCREENSHOTS/<name>.png``."""
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def tiny_app_url(tmp_path_factory, tiny_bert):
    """The app served for a module's browser tests, its default model the tiny BERT, runs in a fresh folder."""
    with serve_app(tmp_path_factory.mktemp("runs"), tiny_bert) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# --------------------------------------------------------------------------------------- garbage collection

def pytest_collection_finish(session):
    """Collection has imported torch, transformers, Gradio and the rest (over half a million objects that live as
    long as the session): move them out of the garbage collector's reach. Every training ends with a full
    ``gc.collect()`` (accelerate's ``free_memory``), which otherwise walks them all each time; objects made later
    are collected as before."""
    gc.collect()
    gc.freeze()
