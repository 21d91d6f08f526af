"""Indexing images shared in Slack: as they arrive (file_shared) and by backfilling a channel's history.

Each image is downloaded from ``url_private`` with the bot token and sent to the retriever service as an
upload, with source ``slack:<channel>/<file>`` and visibility limited to that channel.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
from slack_sdk import WebClient

from tools.client import RetrieverClient

logger = logging.getLogger(__name__)

IMAGE_MIMETYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "image/heic",
    "image/heif",
    "image/heic-sequence",
    "image/heif-sequence",
    "image/avif",
    "image/svg+xml",
    "application/pdf",
)
"""The Slack files indexed: what the retriever service decodes (retriever_service/decode.py; docs/slack.md)."""
IMAGE_FILETYPES = ("jpg", "jpeg", "png", "gif", "webp", "bmp", "tiff", "heic", "heif", "avif", "svg", "pdf")
"""Slack's ``filetype`` of the same files, for those it gives a generic mimetype (application/octet-stream)."""
MAX_FILE_BYTES = 50 * 1024 * 1024


def is_image(file: dict[str, Any]) -> bool:
    """Whether a Slack file object is one the service can index (an image, an SVG or a PDF)."""
    mimetype = str(file.get("mimetype", "")).lower()
    return mimetype in IMAGE_MIMETYPES or (
        mimetype in ("", "application/octet-stream", "binary")
        and str(file.get("filetype", "")).lower() in IMAGE_FILETYPES
    )


class SlackIndexer:
    def __init__(self, client: WebClient, retriever: RetrieverClient, bot_token: str) -> None:
        self._client = client
        self._retriever = retriever
        self._bot_token = bot_token

    def index_file(self, file: dict[str, Any], *, channel: str, text: str | None = None) -> str | None:
        """Indexes one Slack file object; returns the job id, or None when it is not an image (see :func:`is_image`).

        The service decodes it; a broken or unsafe file is listed in that job's ``skipped`` with the reason."""
        if not is_image(file):
            return None
        if int(file.get("size") or 0) > MAX_FILE_BYTES:
            logger.info("skipping %s: larger than %d bytes", file.get("id"), MAX_FILE_BYTES)
            return None
        url = file.get("url_private_download") or file.get("url_private")
        response = httpx.get(
            url, headers={"Authorization": f"Bearer {self._bot_token}"}, timeout=60, follow_redirects=True
        )
        response.raise_for_status()
        job = self._retriever.index_upload(
            [(file.get("name") or f"{file['id']}.img", response.content)],
            source=f"slack:{channel}/{file['id']}",
            allowed=[channel],
            owner=file.get("user"),
            text=text or file.get("title") or file.get("name"),
        )
        return job.id

    def index_shared_file(self, file_id: str, channel: str) -> str | None:
        """The ``file_shared`` event: look the file up and index it for that channel."""
        info = self._client.files_info(file=file_id)
        return self.index_file(info["file"], channel=channel)

    def history_files(self, channel: str, page_size: int = 200) -> Iterator[tuple[dict[str, Any], str]]:
        """(file, message text) of every image in the channel's history, newest first, page by page."""
        cursor = None
        while True:
            page = self._client.conversations_history(channel=channel, limit=page_size, cursor=cursor)
            for message in page.get("messages", []):
                for file in message.get("files", []) or []:
                    if is_image(file):
                        yield file, message.get("text", "")
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    def backfill(self, channel: str, *, progress: bool = True) -> int:
        """Indexes every image in a channel's history; returns how many were sent."""
        from tqdm import tqdm

        sent = 0
        for file, text in tqdm(
            self.history_files(channel), desc=f"backfill {channel}", unit="image", disable=not progress
        ):
            try:
                if self.index_file(file, channel=channel, text=text or None):
                    sent += 1
            except (httpx.HTTPError, OSError) as error:
                logger.warning("could not index %s: %s", file.get("id"), error)
        return sent
