"""Image-text models for retrieval: BLIP, CLIP, SigLIP and VisionTextDualEncoder through transformers.

>>> model = load_model("starter")                       # or a hub id / local folder
>>> vectors = model.encode_dialogs([dialog])             # (n, dim) float32, L2-normalised
>>> for batch in iter_image_batches(paths, model.batch_size):
...     vectors = model.encode_images([d.image for d in batch.images])
"""

from retriever_service.models.base import CHATIR_META_FILE, RetrievalModel
from retriever_service.models.dialog_text import TRUNCATION_POLICIES, TruncationPolicy, dialog_text
from retriever_service.models.families import (
    BlipRetrievalModel,
    ClipRetrievalModel,
    DualEncoderRetrievalModel,
    SiglipRetrievalModel,
)
from retriever_service.models.images import (
    DecodedImage,
    ImageBatch,
    ImageFailure,
    iter_image_batches,
    load_image,
)
from retriever_service.models.loader import load_model, resolve_device

__all__ = [
    "CHATIR_META_FILE",
    "TRUNCATION_POLICIES",
    "BlipRetrievalModel",
    "ClipRetrievalModel",
    "DecodedImage",
    "DualEncoderRetrievalModel",
    "ImageBatch",
    "ImageFailure",
    "RetrievalModel",
    "SiglipRetrievalModel",
    "TruncationPolicy",
    "dialog_text",
    "iter_image_batches",
    "load_image",
    "load_model",
    "resolve_device",
]
