"""One-sentence notices the service and the front-ends show people about the model being served."""

from __future__ import annotations

from chatir.settings import STARTER_MODEL

STARTER_NOTICE = (
    "This search runs the demo's starter model, which only understands the sample world of coloured shapes: to "
    "search real images, set CHATIR_MODEL to a real model (e.g. `chatir models pull Salesforce/blip-itm-base-coco`, "
    "then CHATIR_MODEL=Salesforce/blip-itm-base-coco; see docs/deploy.md)."
)


def model_notice(model_id: str | None) -> str | None:
    """The notice for people using a service that serves ``model_id`` (None when there is nothing to say)."""
    return STARTER_NOTICE if model_id == STARTER_MODEL else None


__all__ = ["STARTER_NOTICE", "model_notice"]
