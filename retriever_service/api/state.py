"""The app's hold on its :class:`RetrieverService`: injected, or loaded in the background at start-up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from fastapi import Request

from chatir import runfile
from chatir.errors import ServiceUnavailableError
from chatir.settings import Settings
from retriever_service.errors import ServiceStartingError
from retriever_service.service import RetrieverService

log = logging.getLogger(__name__)


class ServiceHolder:
    """Owns the service when it loaded it; an injected service belongs to the caller (never closed here)."""

    def __init__(
        self,
        settings: Settings,
        service: RetrieverService | None = None,
        *,
        announce_url: str | None = None,
        on_load_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.owned = service is None
        self.error: str | None = None
        self.announce_url = announce_url
        self.on_load_failure = on_load_failure
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
            if self.on_load_failure is not None:
                self.on_load_failure(self.error)
            return
        with self._lock:
            if self._closing:
                service.close()
                return
            self.service = service
            if self.announce_url is not None:  # other commands find it here, whatever CHATIR_SERVICE_URL says
                runfile.announce(self.settings, self.announce_url, command="serve")
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
            if self.announce_url is not None:
                runfile.withdraw(self.settings)
            service.close()
            self.service = None


def get_service(request: Request) -> RetrieverService:
    """FastAPI dependency: the ready service, or 503 with the reason."""
    holder: ServiceHolder = request.app.state.chatir
    return holder.get()
