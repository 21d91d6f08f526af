"""The app's hold on its :class:`RetrieverService`: injected, or loaded in the background at start-up."""

from __future__ import annotations

import logging
import threading

from fastapi import Request

from chatir.errors import ServiceUnavailableError
from chatir.settings import Settings
from retriever_service.service import RetrieverService, ServiceStartingError

log = logging.getLogger(__name__)


class ServiceHolder:
    """Owns the service when it loaded it; an injected service belongs to the caller (never closed here)."""

    def __init__(self, settings: Settings, service: RetrieverService | None = None) -> None:
        self.settings = settings
        self.service = service
        self.owned = service is None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start_loading(self) -> None:
        """Load the model and open the index in a thread: /healthz answers at once, /readyz once loaded."""
        if self.service is not None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._load, name="chatir-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        log.info("loading model %s", self.settings.model)
        try:
            service = RetrieverService.open(self.settings)
        except Exception as error:  # noqa: BLE001 -- reported by /readyz and every /v1 call
            log.error("the retriever service could not start: %s", error)
            self.error = str(error)
            return
        with self._lock:
            if self._closing:
                service.close()
                return
            self.service = service
        log.info(
            "ready: model %s, %s", service.model_id, self.settings.qdrant_url or self.settings.qdrant_path
        )

    def get(self) -> RetrieverService:
        service = self.service
        if service is not None:
            return service
        if self.error is not None:
            raise ServiceUnavailableError(f"The retriever service could not start: {self.error}")
        raise ServiceStartingError(
            "The retriever service is starting (loading the model, opening the index)."
        )

    def wait_loaded(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            service = self.service
        if service is not None and self.owned:
            service.close()
            self.service = None


def get_service(request: Request) -> RetrieverService:
    """FastAPI dependency: the ready service, or 503 with the reason."""
    holder: ServiceHolder = request.app.state.chatir
    return holder.get()
