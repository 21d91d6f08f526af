"""The text tower in ONNX Runtime: the same fp32 arithmetic, a faster CPU engine.

:func:`install_onnx_text` exports the model's text path (tower + projection + normalisation, exactly
``RetrievalModel.text_features``) to ONNX with a dynamic batch and sequence length, opens it in an ONNX Runtime
CPU session and makes the model's ``text_features`` run there. Tokenisation, batching, dialog texts are
unchanged. Export happens in memory at load (seconds; nothing is written under ``CHATIR_HOME``).
:mod:`retriever_service.models.fastpath` only keeps it when its embeddings match fp32 (they do to ~1e-6).
Needs ``onnxruntime`` (and ``onnx`` for the export): the ``service`` extra installs them.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from retriever_service.models.base import RetrievalModel

EXAMPLE_TEXTS = ("a red star on a blue background, is it large? yes", "two circles")
OPSET = 17


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _TextPath(torch.nn.Module):
    """``model.text_features`` as a module (what is exported)."""

    def __init__(self, model: RetrievalModel) -> None:
        super().__init__()
        self.retrieval = model
        self.towers = torch.nn.ModuleList(model._text_modules())  # registered, for the exporter

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        names = [n for n in self.retrieval.text_input_names]
        return self.retrieval.text_features(**dict(zip(names, inputs, strict=True)))


class OnnxTextFeatures:
    """Callable like ``RetrievalModel.text_features`` (keyword token tensors -> (n, dim) normalised tensor),
    running an ONNX Runtime session; thread-safe (one session, concurrent ``run`` calls are allowed)."""

    def __init__(self, session: Any, input_names: list[str]) -> None:
        self.session = session
        self.input_names = input_names

    def __call__(self, **tokens: torch.Tensor) -> torch.Tensor:
        feeds = {name: tokens[name].detach().cpu().numpy() for name in self.input_names}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def export_text_onnx(model: RetrievalModel) -> tuple[bytes, list[str]]:
    """The ONNX bytes of the model's text path and its input names."""
    tokens = model.tokenize(list(EXAMPLE_TEXTS))
    names = [n for n in model.text_input_names if n in tokens]
    inputs = tuple(tokens[n] for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"features": {0: "batch"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notices about python values in the graph
        torch.onnx.export(
            _TextPath(model).eval(),
            inputs,
            buffer,
            input_names=names,
            output_names=["features"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue(), names


def open_session(onnx_bytes: bytes, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def install_onnx_text(model: RetrievalModel) -> Callable[[], None]:
    """Make ``model.text_features`` run in ONNX Runtime; returns a function that puts the torch path back."""
    onnx_bytes, names = export_text_onnx(model)
    features = OnnxTextFeatures(open_session(onnx_bytes), names)
    model.text_features = features  # type: ignore[method-assign]

    def restore() -> None:
        if model.__dict__.get("text_features") is features:
            del model.text_features

    return restore


__all__ = ["OnnxTextFeatures", "export_text_onnx", "install_onnx_text", "onnx_available", "open_session"]
