"""A trained classifier as one ONNX graph (tokens in, logits out) and the ONNX Runtime session that runs it.

The graph holds everything between the tokenizer and the logits: the encoder, the pooling and the head (a
sentence classifier's mean pooling and unit-length scaling included), with the calibration temperature already
folded into the head. Inputs are the tokenizer's ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where
the model has them) with dynamic batch and sequence axes; the one output is ``logits``. That is the layout
optimum's ``ORTModelForSequenceClassification`` and a bare ``onnxruntime.InferenceSession`` both expect.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..errors import FinetunerError
from .windows import WindowPool, window_batches

ONNX_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"  # the name optimum's quantizer gives its output
REPORT_FILE = "onnx_export.json"  # what an export was checked against, and which saved weights it is of
OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxExportError(FinetunerError):
    """The model cannot be written as an ONNX graph, or the graph does not predict what the model does."""


def graph_inputs(model: nn.Module, tokenizer: Any) -> List[str]:
    """The inputs the graph takes: the tokenizer's, among those the model's forward accepts."""
    produced = set(getattr(tokenizer, "model_input_names", None) or ("input_ids", "attention_mask"))
    forward = model.get_base_model().forward if hasattr(model, "get_base_model") else model.forward
    parameters = inspect.signature(forward).parameters
    takes_more = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return [name for name in _INPUTS if name in produced and (name in parameters or takes_more)
            and (name != "token_type_ids" or _uses_token_types(model))]


def _uses_token_types(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return int(getattr(config, "type_vocab_size", 0) or 0) > 0


class _LogitsOf(nn.Module):
    """``model`` called with named token tensors, returning the logits alone (what the graph exports)."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors))).logits


def export_graph(model: nn.Module, tokenizer: Any, path: Union[str, Path]) -> List[str]:
    """Write ``model`` (on the CPU, fp32, no adapter: merge LoRA first) as an ONNX graph at ``path``; returns the
    graph's input names."""
    names = graph_inputs(model, tokenizer)
    sample = tokenizer(["an example sentence to trace", "a second, longer example sentence to trace the graph"],
                       padding=True, return_tensors="pt")
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shape arithmetic in the attention masks
            torch.onnx.export(_LogitsOf(model, names), tuple(sample[name] for name in names), str(path),
                              input_names=names, output_names=["logits"],
                              dynamic_axes={**dynamic, "logits": {0: "batch"}}, opset_version=OPSET,
                              do_constant_folding=True, dynamo=False)
    except Exception as exc:  # tracing fails on some architectures: say which, keep the model usable
        raise OnnxExportError(f"This {type(model).__name__} could not be traced into an ONNX graph "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).") from exc
    finally:
        model.train(was_training)
    return names


def quantize_int8(source: Union[str, Path], target: Union[str, Path]) -> None:
    """Dynamic int8 quantization of the matrix products with weights (int8 per output channel, activations
    quantized per batch), except the down projections (wide → narrow: the MLP's output, a decoder's score head),
    whose inputs carry the activation outliers that int8 rounds away. On MiniLM few-shot SST-2 that kept accuracy
    within 0.2 point where quantizing them too lost 1.4 (bench/results/onnx.md)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    shapes = {weight.name: tuple(weight.dims) for weight in graph.initializer}
    down = [node.name for node in graph.node if node.op_type == "MatMul"
            and any(len(shapes.get(name, ())) == 2 and shapes[name][0] > shapes[name][1] for name in node.input)]
    logging.getLogger().addFilter(_not_static_quantization_advice)  # idempotent: a filter is added once
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                     per_channel=True, nodes_to_exclude=down)


def _not_static_quantization_advice(record: Any) -> bool:
    """onnxruntime's quantizer logs "Please consider to run pre-processing" on the root logger: advice for
    static quantization, noise here."""
    return not str(record.msg).startswith("Please consider to run pre-processing")


class OnnxLogits:
    """An ONNX Runtime session over an exported graph: logits for texts, batched by length like the PyTorch path.

    Args:
        path: the ``.onnx`` file (read when the session is made; it may be deleted afterwards).
        threads: intra-op threads (None: as many as torch uses, by default one per core).
    """

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # an optional speed-up; the PyTorch path stays
            raise OnnxExportError("onnxruntime is not installed: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or torch.get_num_threads()  # `serve --threads` sets both
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.input_names = [i.name for i in self.session.get_inputs()]
            outputs = self.session.get_outputs()
            if [o.name for o in outputs] != ["logits"] or not isinstance(outputs[0].shape[-1], int):
                raise ValueError("its one output must be logits of a fixed number of classes")
            self.num_labels = int(outputs[0].shape[-1])
        except Exception as exc:  # a damaged or foreign file: name it and the way out
            raise OnnxExportError(f"{path} is not a usable ONNX export of a finetuner model ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}); export it "
                                  "again with python -m finetuner export.") from None

    def __call__(self, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 64,
                 windows: bool = True) -> np.ndarray:
        """Logits for ``texts`` in input order (shape texts × classes); long texts are read in windows pooled
        exactly as the PyTorch path pools them (the same :func:`~.windows.window_batches` and
        :class:`~.windows.WindowPool`)."""
        pool = WindowPool(len(texts), self.num_labels)
        for rows, encoded in window_batches(tokenizer, texts, max_length, batch_size, windows=windows, tensors="np"):
            feed = {name: np.asarray(encoded[name], dtype=np.int64) for name in self.input_names}
            pool.add(rows, self.session.run(["logits"], feed)[0])
        return pool.result()
