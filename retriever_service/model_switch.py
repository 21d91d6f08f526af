"""Changing the service's model without downtime: run a reindex inside the service (the embedded store admits one
process), and follow a switch made by another process (a ``chatir reindex`` against a Qdrant server).

:func:`run_reindex` builds the new collection while the service keeps answering from the old one (the index lock is
taken per store call, never for the whole build), switches the alias, and hands the new model and index to the
service in one step (:meth:`RetrieverService.adopt`). :class:`ActiveFollower` polls the alias of a Qdrant server
every ``interval_s`` and, when another process switched it, loads the model the new collection records and adopts
it; until then the service keeps serving the collection it opened (it holds it by its own name, not the alias).
Slack images whose upload is gone are downloaded again with the bot token (:func:`slack_refetcher`).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatir.errors import ChatIRError

if TYPE_CHECKING:
    from chatir.settings import Settings
    from retriever_service.index.records import Copy, ImageRecord
    from retriever_service.index.reindex import Refetch, ReindexReport
    from retriever_service.service import RetrieverService

log = logging.getLogger(__name__)

FOLLOW_INTERVAL_S = 10.0
SLACK_SOURCE_PREFIX = "slack:"


def slack_refetcher(settings: Settings) -> Refetch | None:
    """Fetch a Slack image again (``files.info`` then ``url_private_download`` with the bot token) into the
    service's uploads; None when no bot token is configured."""
    if settings.slack_bot_token is None:
        return None
    import httpx

    from retriever_service import uploads

    token = settings.slack_bot_token.get_secret_value()
    api = settings.slack_api_url.rstrip("/") + "/"
    headers = {"Authorization": f"Bearer {token}"}

    def refetch(record: ImageRecord, location: str, copy: Copy) -> Path | None:
        source = copy.source or ""
        if not source.startswith(SLACK_SOURCE_PREFIX) or "/" not in source:
            return None
        file_id = source.rsplit("/", 1)[1]
        with httpx.Client(headers=headers, timeout=60, follow_redirects=True) as client:
            info = client.get(api + "files.info", params={"file": file_id}).json()
            if not info.get("ok"):
                log.warning("Slack files.info %s: %s", file_id, info.get("error"))
                return None
            file = info["file"]
            url = file.get("url_private_download") or file.get("url_private")
            response = client.get(url)
            response.raise_for_status()
        path, _ = uploads.save_upload(
            settings, file.get("name") or Path(location).name, io.BytesIO(response.content)
        )
        return path

    return refetch


def run_reindex(
    service: RetrieverService,
    model_name: str,
    progress: Callable[[int, int], None] | None = None,
    *,
    drop_old: bool = False,
) -> ReindexReport:
    """Build the collection of ``model_name`` from the serving one, switch to it and serve it."""
    from retriever_service.index.reindex import reindex
    from retriever_service.models import load_model

    settings = service.settings
    model = load_model(model_name, device=settings.device, settings=settings)
    report, built = reindex(
        settings=settings,
        source=service._raw_index,
        model=model,
        lock=service._index_lock,
        refetch=slack_refetcher(settings),
        progress=progress,
        batch_size=settings.batch_size,
    )
    service.adopt(model, built)
    if drop_old:
        from retriever_service.index import collections

        with service._index_lock:
            collections.drop(service._raw_index.client, settings, report.source)
    return report


def _open_index(service: RetrieverService, model: Any, collection: str) -> Any:
    from retriever_service.index import ImageIndex

    shared = None if service.settings.qdrant_url else service._raw_index.client
    with service._index_lock:
        return ImageIndex(service.settings, model.model_id, model.dim, collection=collection, client=shared)


def follow_active(service: RetrieverService) -> bool:
    """When the alias now points at another collection than the one served, load its model and serve it."""
    from retriever_service.index.collections import active_collection, family
    from retriever_service.models import load_model

    raw = service._raw_index
    with service._index_lock:
        active = active_collection(raw.client, service.settings.collection)
        if active == raw.collection:
            return False
        info = next((c for c in family(raw.client, service.settings.collection) if c.name == active), None)
    if info is None or info.model is None:
        raise ChatIRError(f"The collection {active!r} now serving records no model; not following it.")
    log.info("the index was switched to %r (%s): loading that model", active, info.model)
    model = load_model(info.model, device=service.settings.device, settings=service.settings)
    service.adopt(model, _open_index(service, model, active))
    return True


class ActiveFollower(threading.Thread):
    """Polls for a switch made by another process; stops with the service."""

    def __init__(
        self, service: RetrieverService, stop: threading.Event, interval_s: float = FOLLOW_INTERVAL_S
    ):
        super().__init__(name="chatir-follow-active", daemon=True)
        self.service, self.stop, self.interval_s = service, stop, interval_s

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                follow_active(self.service)
            except Exception as error:  # noqa: BLE001 -- keep serving the old collection, say why
                log.error("could not follow the switched index (still serving the old one): %s", error)


__all__ = ["FOLLOW_INTERVAL_S", "ActiveFollower", "follow_active", "run_reindex", "slack_refetcher"]
