"""``chatir eval --protocol chatir``: ChatIR's exact evaluation settings in one switch.

What levymsn/ChatIR's ``eval.py`` does, and what this sets:

- the dialog text is the caption and every "question answer" round joined by ", ", and a text over the window
  is cut at the end (``tail``), never the caption kept (this project's default, ``keep_caption``);
- BLIP reads 200 tokens (other families keep their own window: CLIP's ChatIR baseline read 77);
- fp32 on every device (this project loads fp16 on CUDA by default);
- score ties go to the lower corpus index (a stable argsort: ``--ties index``);
- the corpus is a list file (``Search_Space_val_50k.json``), in its order, and every path in it must exist:
  a missing image would shift every corpus id after it.

The settings are written into the report (``protocol``), so a table says what it was measured under.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatir.settings import Settings
from evaluation.data import EvaluationInputError

if TYPE_CHECKING:
    from retriever_service.models import RetrievalModel

BLIP_TOKENS = 200
SEPARATOR = ", "

CHATIR_PROTOCOL: dict[str, Any] = {
    "name": "chatir",
    "truncation": "tail",
    "blip_max_text_tokens": BLIP_TOKENS,
    "separator": SEPARATOR,
    "dtype": "float32",
    "ties": "index",
    "corpus": "list file, in its order, every path present",
}


def check_options(*, world: object, corpus_list: object, ties: str) -> None:
    """Refuse what ChatIR's protocol does not define (before anything is loaded)."""
    if world is not None:
        raise EvaluationInputError(
            "--protocol chatir is ChatIR's fixed-dialog protocol: give --dialogs, not --world"
        )
    if corpus_list is None:
        raise EvaluationInputError(
            "--protocol chatir needs --corpus LIST (ChatIR's Search_Space_val_50k.json): its order defines the "
            "corpus ids, and 'every image under --images' is not ChatIR's corpus"
        )
    if ties != "index":
        raise EvaluationInputError("--protocol chatir ranks ties as ChatIR's argsort does (--ties index)")


def load_model_for_chatir(name: str, settings: Settings) -> RetrievalModel:
    """``name`` loaded as ChatIR evaluates: fp32, ``tail`` truncation, ", " separator, BLIP at 200 tokens."""
    import torch

    from retriever_service.models import load_model

    chosen = settings.model_copy(update={"truncation": "tail", "dialog_separator": SEPARATOR})
    model = load_model(name, device=settings.device, settings=chosen, dtype=torch.float32)
    model.truncation = "tail"  # also over what the model folder records
    model.separator = SEPARATOR
    if getattr(model, "family", None) == "blip":
        model.max_text_tokens = BLIP_TOKENS
    return model


def protocol_report(model: RetrievalModel) -> dict[str, Any]:
    """What the report records: the protocol and the values the model actually used."""
    return {
        **CHATIR_PROTOCOL,
        "model_family": getattr(model, "family", None),
        "max_text_tokens": int(model.max_text_tokens),
        "model_dtype": str(getattr(model, "dtype", "")),
    }
