"""The image index: records, the Qdrant-backed store, fast embedded search and the indexer.

>>> index = ImageIndex(settings, model.model_id, model.dim)      # server (QDRANT_URL) or embedded
>>> report = index_paths(["~/Pictures"], model=model, index=index)
>>> hits = index.search(vector, k=10, filter=SearchFilter(allowed=["C123", "public"]), exclude_ids=[...])
"""

from retriever_service.index.filters import Scope
from retriever_service.index.indexer import IndexReport, SkippedFile, index_paths
from retriever_service.index.records import (
    ImageRecord,
    content_id,
    file_content_id,
    image_id_of_point,
    is_image_id,
    point_id,
    text_from_filename,
)
from retriever_service.index.store import FileEntry, ImageIndex

__all__ = [
    "FileEntry",
    "ImageIndex",
    "ImageRecord",
    "IndexReport",
    "Scope",
    "SkippedFile",
    "content_id",
    "file_content_id",
    "image_id_of_point",
    "index_paths",
    "is_image_id",
    "point_id",
    "text_from_filename",
]
