"""A faster CPU text encoder that gives the same answers, checked against fp32 when the model loads.

A dialog is embedded on every turn. Two faster CPU paths for the text tower (+ projection):

* ``onnx``: the same fp32 graph in ONNX Runtime (:mod:`retriever_service.models.onnx_text`), embeddings equal
  to fp32 within ~1e-6;
* ``int8``: dynamic int8 ``Linear`` layers (``torch.ao.quantization.quantize_dynamic``, per-channel weights),
  about twice as fast as fp32 torch, but trained weights with outliers can move embeddings too far.

A path is only worth having when it does not change what the user sees, so :func:`apply_text_fastpath` checks
it: it embeds a probe set of dialogs (:data:`PROBE_TEXTS`) with fp32 and with the candidate and keeps the
candidate only when every probe's cosine to fp32 is at least :data:`MIN_COSINE` (``CHATIR_TEXT_FASTPATH=auto``,
the default: ONNX first, then int8). ``onnx``/``int8`` force one (opt-in), ``fp32`` never changes anything.
Image embeddings (and so the index) stay fp32. GPUs and non-fp32 models are left as they are.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from chatir.settings import Settings
    from retriever_service.models.base import RetrievalModel

log = logging.getLogger(__name__)

FastPath = Literal["auto", "fp32", "int8", "onnx"]
MIN_COSINE = 0.999
"""The faithfulness bar: every probe embedding's cosine to fp32 must reach this."""

PROBE_TEXTS: tuple[str, ...] = (
    "a red star on a blue background",
    "two green circles, is there a star? no, what colour is the background? white",
    "a man riding a wave on top of a surfboard, is it sunny? yes, how many people? one, is he wearing a "
    "wetsuit? yes, what colour is it? black, can you see the shore? no, is the water calm? no",
    "a kitchen with wooden cabinets and a white refrigerator, is there a window? yes, any people? no",
    "a dog lying on a couch, what colour is the dog? brown and white, is the couch leather? no, is there a "
    "pillow? yes, what colour is the pillow? blue, is the tv on? i can not tell, any other animals? no, is it "
    "daytime? yes, is there a lamp? yes, is the lamp on? no, what colour are the walls? beige",
    "a plate of food with broccoli and rice",
    "a striped purple heart in the corner of a dark picture with a frame",
    "people standing at a bus stop in the rain, how many people? three, do they have umbrellas? two of them",
    "a giraffe",
    "a small yellow square, is it filled? yes, is there anything else? a large green triangle on the left, is "
    "the background dark? yes, is there a border? no, are the shapes touching? no, how many shapes? two",
)


@dataclass(frozen=True)
class FastPathReport:
    """What :func:`apply_text_fastpath` chose and why."""

    path: Literal["fp32", "int8", "onnx"]
    min_cosine: float | None
    reason: str


def quantize_text_int8(model: RetrievalModel) -> dict[str, torch.nn.Module]:
    """Replace the text tower and its projection by dynamic-int8 copies (per-channel weights); returns the fp32
    originals by module name, for :func:`restore_modules`."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = _module_names(model)
    originals: dict[str, torch.nn.Module] = {}
    with warnings.catch_warnings():  # torch.ao's deprecation notices: the kernels are current
        warnings.simplefilter("ignore")
        for name, module in names.items():
            # quantize_dynamic converts children only: a bare projection goes in a container
            holder = torch.nn.Sequential(copy.deepcopy(module).eval())
            quantized = quantize_dynamic(
                holder, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
            )[0]
            originals[name] = module
            _set_module(model.model, name, quantized)
    model.clear_text_cache()
    return originals


def restore_modules(model: RetrievalModel, originals: dict[str, torch.nn.Module]) -> None:
    """Put back the modules :func:`quantize_text_int8` replaced."""
    for name, module in originals.items():
        _set_module(model.model, name, module)
    model.clear_text_cache()


def probe_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, dim) embedding matrices."""
    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = candidate / np.linalg.norm(candidate, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def apply_text_fastpath(
    model: RetrievalModel,
    mode: FastPath = "auto",
    probes: tuple[str, ...] = PROBE_TEXTS,
    cache_dir: Path | None = None,
) -> FastPathReport:
    """Switch ``model``'s text encoder to a faster CPU path when ``mode`` asks for it.

    ``auto`` tries ONNX Runtime (fp32, when installed), then dynamic int8, and keeps the first whose every probe
    embedding has cosine >= :data:`MIN_COSINE` to fp32; ``onnx`` / ``int8`` force one (opt-in, unchecked);
    ``fp32`` changes nothing. Only CPU fp32 models change. The chosen path is recorded as ``model.text_path``.
    ``cache_dir``: where the ONNX export is kept between starts."""
    if mode == "fp32":
        return _keep(model, None, "CHATIR_TEXT_FASTPATH=fp32")
    if model.device.type != "cpu" or model.dtype != torch.float32:
        return _keep(model, None, f"fast paths apply to CPU fp32 models ({model.device}, {model.dtype})")
    texts = list(probes)
    model.clear_text_cache()
    reference = model.encode_texts(texts)
    worst: float | None = None
    reasons: list[str] = []
    for path in ("onnx", "int8") if mode == "auto" else (mode,):
        undo, why_not = _install(model, path, cache_dir)
        if undo is None:
            reasons.append(why_not)
            continue
        model.clear_text_cache()  # clause vectors of the path being checked, not cached fp32 ones
        worst = float(probe_cosines(reference, model.encode_texts(texts)).min())
        if mode != "auto" or worst >= MIN_COSINE:
            model.text_path = path  # type: ignore[attr-defined]
            reason = f"CHATIR_TEXT_FASTPATH={mode}" if mode != "auto" else f"faithful on {len(texts)} probes"
            log.info("text encoder: %s (min cosine to fp32 %.6f, %s)", path, worst, reason)
            return FastPathReport(path, worst, reason)
        undo()
        reasons.append(f"{path} min cosine {worst:.5f} < {MIN_COSINE} on the probes")
    return _keep(model, worst, "; ".join(reasons))


def apply_configured_fastpath(model: RetrievalModel, settings: Settings) -> FastPathReport:
    """:func:`apply_text_fastpath` as ``settings`` ask (``CHATIR_TEXT_FASTPATH``), the ONNX export kept in
    ``CHATIR_HOME/cache/onnx``: the text path the service and ``chatir eval`` run."""
    return apply_text_fastpath(model, settings.text_fastpath, cache_dir=settings.home / "cache" / "onnx")


def _install(
    model: RetrievalModel, path: str, cache_dir: Path | None = None
) -> tuple[Callable[[], None] | None, str]:
    """Put ``path`` in place; (a function that undoes it, or None and why it is not available)."""
    if path == "onnx":
        from retriever_service.models.onnx_text import install_onnx_text, onnx_available

        if not onnx_available():
            return None, "onnxruntime is not installed"
        try:
            return install_onnx_text(model, cache_dir), ""
        except Exception as error:  # noqa: BLE001 -- an architecture the exporter cannot trace: stay on torch
            log.warning("the text encoder could not be exported to ONNX: %s", error)
            return None, f"ONNX export failed ({type(error).__name__})"
    if path == "int8":
        if not _has_engine():
            return None, "this torch build has no quantized CPU engine"
        originals = quantize_text_int8(model)
        return (lambda: restore_modules(model, originals)), ""
    raise ValueError(f"unknown text path {path!r}")


def _keep(model: RetrievalModel, worst: float | None, reason: str) -> FastPathReport:
    model.text_path = "fp32"  # type: ignore[attr-defined]
    log.info("text encoder: fp32 (%s)", reason)
    return FastPathReport("fp32", worst, reason)


def _has_engine() -> bool:
    engines = set(torch.backends.quantized.supported_engines) - {"none"}
    return bool(engines)


def _module_names(model: RetrievalModel) -> dict[str, torch.nn.Module]:
    """The text modules' names inside ``model.model`` (the outermost ones: a projection inside the tower is
    quantised with it)."""
    by_id = {id(module): name for name, module in model.model.named_modules() if name}
    names: dict[str, torch.nn.Module] = {}
    for module in model._text_modules():
        name = by_id.get(id(module))
        if name is None:
            raise ValueError(f"text module {type(module).__name__} is not a submodule of the model")
        names[name] = module
    outermost = {n: m for n, m in names.items() if not any(n.startswith(o + ".") for o in names if o != n)}
    return outermost


def _set_module(root: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


__all__ = [
    "MIN_COSINE",
    "PROBE_TEXTS",
    "FastPath",
    "FastPathReport",
    "apply_configured_fastpath",
    "apply_text_fastpath",
    "probe_cosines",
    "quantize_text_int8",
    "restore_modules",
]
