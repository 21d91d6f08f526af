"""The text tower in ONNX Runtime: the same fp32 arithmetic, a faster CPU engine.

:func:`install_onnx_text` exports the model's text path (tower + projection, exactly
``RetrievalModel.text_vectors``) to ONNX with a dynamic batch and sequence length, opens it in an ONNX Runtime
CPU session and makes the model's ``text_vectors`` run there (normalisation and clause pooling stay in
Python). Tokenisation, batching, dialog texts are unchanged. The export (seconds for the starter, ~20 s for
BLIP-base on 2 cores) is cached in ``cache_dir`` (the service uses ``CHATIR_HOME/cache/onnx``) under a hash
of the text weights and the exporter's versions, so a later start of the same model only opens the session.
:mod:`retriever_service.models.fastpath` only keeps it when its embeddings match fp32 (they do to ~1e-6).
Needs ``onnxruntime`` (and ``onnx`` for the export): the ``service`` extra installs them.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
    """``model.text_vectors`` as a module (what is exported)."""

    def __init__(self, model: RetrievalModel) -> None:
        super().__init__()
        self.retrieval = model
        self.towers = torch.nn.ModuleList(model._text_modules())  # registered, for the exporter

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        names = [n for n in self.retrieval.text_input_names]
        return self.retrieval.text_vectors(**dict(zip(names, inputs, strict=True)))


class OnnxTextFeatures:
    """Callable like ``RetrievalModel.text_vectors`` (keyword token tensors -> (n, dim) unnormalised tensor),
    running an ONNX Runtime session; thread-safe (one session, concurrent ``run`` calls are allowed)."""

    def __init__(self, session: Any, input_names: list[str]) -> None:
        self.session = session
        self.input_names = input_names

    def __call__(self, **tokens: torch.Tensor) -> torch.Tensor:
        feeds = {name: tokens[name].detach().cpu().numpy() for name in self.input_names}
        return torch.from_numpy(self.session.run(None, feeds)[0])


@contextmanager
def eager_attention(root: torch.nn.Module) -> Iterator[None]:
    """Within the block, the transformers models in ``root`` compute attention in eager form (matmul, softmax,
    matmul) rather than through ``scaled_dot_product_attention``; put back after. Exported that way the graph
    runs 5-10 % faster in ONNX Runtime's CPU engine (benchmarks/eval_speed.py), with the same arithmetic. A model
    that cannot switch is left as it is."""
    from transformers import PreTrainedModel

    models = [m for m in root.modules() if isinstance(m, PreTrainedModel)]
    before = {id(m.config): (m.config, m.config._attn_implementation_internal) for m in models}
    try:
        for model in models:
            if model.config._attn_implementation != "eager" and model._can_set_attn_implementation():
                model.set_attn_implementation("eager")  # also sets its submodels
        yield
    finally:
        for config, implementation in before.values():
            config._attn_implementation_internal = implementation  # as set_attn_implementation stores it


def export_text_onnx(
    model: RetrievalModel, *, attention: Literal["eager", "native"] = "eager"
) -> tuple[bytes, list[str]]:
    """The ONNX bytes of the model's text path and its input names. ``attention``: traced in eager form (the
    default, see :func:`eager_attention`) or as the model computes it (``benchmarks/eval_speed.py`` compares)."""
    tokens = model.tokenize(list(EXAMPLE_TEXTS))
    names = [n for n in model.text_input_names if n in tokens]
    inputs = tuple(tokens[n] for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"features": {0: "batch"}}
    buffer = io.BytesIO()
    with (
        warnings.catch_warnings(),
        torch.inference_mode(False),
        torch.no_grad(),
        eager_attention(model.model) if attention == "eager" else nullcontext(),
    ):
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


EXPORT_FORMAT = "text-vectors-3"
"""What the exported graph computes and how (2: the unnormalised vectors rather than the normalised features;
3: attention exported in eager form)."""


def export_key(model: RetrievalModel) -> str:
    """A hash of what the export depends on: the text path's weights, its inputs and the exporter's versions."""
    digest = hashlib.sha256()
    parts = (
        EXPORT_FORMAT,
        type(model).__name__,
        torch.__version__,
        str(OPSET),
        ",".join(model.text_input_names),
    )
    for part in parts:
        digest.update(part.encode() + b"\0")
    for name, tensor in _TextPath(model).state_dict().items():
        digest.update(name.encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def cached_export(model: RetrievalModel, cache_dir: Path | None) -> tuple[bytes, list[str]]:
    """:func:`export_text_onnx`, read from / written to ``cache_dir`` when given (written atomically)."""
    if cache_dir is None:
        return export_text_onnx(model)
    names = [n for n in model.text_input_names if n in model.tokenize(list(EXAMPLE_TEXTS))]
    path = Path(cache_dir) / f"text-{export_key(model)}.onnx"
    if path.is_file():
        return path.read_bytes(), names
    onnx_bytes, names = export_text_onnx(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as handle:
        handle.write(onnx_bytes)
    os.replace(handle.name, path)
    return onnx_bytes, names


def install_onnx_text(model: RetrievalModel, cache_dir: Path | None = None) -> Callable[[], None]:
    """Make ``model.text_vectors`` (so ``text_features`` and ``encode_texts``) run in ONNX Runtime; returns a
    function that puts the torch path back.
    ``cache_dir``: where exports are kept between starts (None: export every time)."""
    onnx_bytes, names = cached_export(model, cache_dir)
    features = OnnxTextFeatures(open_session(onnx_bytes), names)
    model.text_vectors = features  # type: ignore[method-assign]
    model.clear_text_cache()

    def restore() -> None:
        if model.__dict__.get("text_vectors") is features:
            del model.text_vectors
            model.clear_text_cache()

    return restore


__all__ = [
    "OnnxTextFeatures",
    "cached_export",
    "eager_attention",
    "export_key",
    "export_text_onnx",
    "install_onnx_text",
    "onnx_available",
    "open_session",
]
