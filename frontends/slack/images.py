"""Getting images into Slack without a public URL: thumbnails uploaded with files_upload_v2 and shown
with ``slack_file`` image blocks; originals downscaled before they are posted."""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path

from PIL import Image
from slack_sdk import WebClient

from tools.client import RetrieverClient

logger = logging.getLogger(__name__)

MAX_ORIGINAL_SIDE = 2048
"""Longest side of a "This one" image posted to a thread; larger originals are downscaled."""


def downscale_jpeg(data: bytes, max_side: int = MAX_ORIGINAL_SIDE) -> tuple[bytes, str]:
    """The image as (bytes, extension): unchanged when small enough, else a JPEG no larger than ``max_side``."""
    with Image.open(io.BytesIO(data)) as image:
        if max(image.size) <= max_side and image.format in ("JPEG", "PNG", "GIF"):
            return data, image.format.lower().replace("jpeg", "jpg")
        image = image.convert("RGB")
        image.thumbnail((max_side, max_side))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=88)
        return out.getvalue(), "jpg"


class SlackImagePublisher:
    """Uploads each image's thumbnail once (cached by image id on disk) and posts chosen originals."""

    def __init__(self, client: WebClient, retriever: RetrieverClient, cache_file: Path) -> None:
        self._client = client
        self._retriever = retriever
        self._cache_file = cache_file
        self._lock = threading.Lock()
        self._file_ids: dict[str, str] = {}
        if cache_file.exists():
            try:
                self._file_ids = json.loads(cache_file.read_text())
            except ValueError:
                logger.warning("ignoring unreadable thumbnail cache %s", cache_file)

    def thumbnail_file_ids(self, image_ids: list[str], *, allowed: list[str] | None) -> dict[str, str]:
        """Slack file ids of the thumbnails of ``image_ids`` (uploading those not uploaded yet).

        ``allowed`` is the conversation's scope: the service hands out only thumbnails inside it."""
        out: dict[str, str] = {}
        for image_id in image_ids:
            with self._lock:
                known = self._file_ids.get(image_id)
            if known is None:
                known = self._upload_thumbnail(image_id, allowed)
            if known:
                out[image_id] = known
        return out

    def _upload_thumbnail(self, image_id: str, allowed: list[str] | None) -> str | None:
        try:
            data = self._retriever.thumbnail(image_id, allowed=allowed)
        except Exception as error:  # noqa: BLE001 - a missing thumbnail must not break the turn
            logger.warning("no thumbnail for %s: %s", image_id, error)
            return None
        response = self._client.files_upload_v2(content=data, filename=f"{image_id}.jpg", title=image_id)
        file_id = response["file"]["id"]
        with self._lock:
            self._file_ids[image_id] = file_id
            self._cache_file.parent.mkdir(parents=True, exist_ok=True)
            self._cache_file.write_text(json.dumps(self._file_ids))
        return file_id

    def post_original(
        self,
        *,
        image_id: str,
        title: str,
        where: str,
        channel: str,
        thread_ts: str,
        allowed: list[str] | None,
    ) -> None:
        """Posts the full image (downscaled when large) into the thread, saying where it lives.

        ``allowed``: the conversation's scope; an image outside it is not fetched (the service answers 404)."""
        try:
            data, extension = downscale_jpeg(self._retriever.image(image_id, allowed=allowed))
        except OSError:  # a format only the service decodes (HEIC, SVG, PDF): its largest rendering instead
            data = self._retriever.thumbnail(image_id, allowed=allowed, size=MAX_ORIGINAL_SIDE)
            extension = "jpg"
        self._client.files_upload_v2(
            content=data,
            filename=f"{image_id}.{extension}",
            title=title,
            channel=channel,
            thread_ts=thread_ts,
            initial_comment=f"Here it is: *{title}* — it lives at `{where}`",
        )
