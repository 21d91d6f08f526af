"""HTTP client of the retriever service (sync and async), with timeouts and retries.

Transient failures (connection errors, timeouts, 5xx) are retried with exponential back-off and end as
:class:`chatir.errors.ServiceUnavailableError` ("the image index is unavailable: ..."); a 4xx answer is
not retried and raises :class:`RetrieverRequestError` carrying the service's own JSON message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, urljoin

import httpx
from pydantic import BaseModel
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from chatir.dialog import Dialog
from chatir.errors import ChatIRError, ServiceUnavailableError
from chatir.schemas import (
    MAX_ENCODE_TEXTS,
    PUBLIC,
    EncodeRequest,
    EncodeResponse,
    EncodeTextsRequest,
    EncodeTextsResponse,
    Hit,
    IndexJob,
    IndexRequest,
    LookupRequest,
    LookupResponse,
    PoolRequest,
    PoolResponse,
    SearchRequest,
    SearchResponse,
    VectorsRequest,
    VectorsResponse,
)

if TYPE_CHECKING:
    from chatir.settings import Settings

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0


class RetrieverRequestError(ChatIRError):
    """The service refused a request (4xx): bad input, unknown image, missing or wrong API key."""

    def __init__(self, status_code: int, error: str, detail: Any = None) -> None:
        self.status_code = status_code
        self.error = error
        self.detail = detail
        message = f"the retriever service rejected the request ({status_code}): {error}"
        if isinstance(detail, str) and detail and detail not in error:
            message += f" ({_short(detail)})"
        super().__init__(message)


class _TransientError(Exception):
    """A failure worth retrying (5xx); turned into ServiceUnavailableError once retries run out."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"HTTP {response.status_code}: {_error_text(response)}")


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_text(response: httpx.Response) -> str:
    """The service's message from ``{"error": ..., "detail": ...}`` (or FastAPI's ``{"detail": ...}``)."""
    try:
        body = response.json()
    except ValueError:
        return _short(response.text.strip() or response.reason_phrase)
    if isinstance(body, dict):
        if "error" in body:
            return str(body["error"])
        if "detail" in body:
            return _short(body["detail"])
    return _short(body)


def _request_error(response: httpx.Response) -> RetrieverRequestError:
    detail: Any = None
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            detail = body.get("detail")
    except ValueError:
        pass
    return RetrieverRequestError(response.status_code, _error_text(response), detail)


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, (_TransientError, httpx.TransportError))


def _unavailable(base_url: str, error: BaseException, attempts: int) -> ServiceUnavailableError:
    if isinstance(error, httpx.ConnectError):
        reason = f"cannot connect to the retriever service at {base_url}"
    elif isinstance(error, httpx.TimeoutException):
        reason = f"the retriever service at {base_url} did not answer in time"
    elif isinstance(error, _TransientError):
        reason = f"the retriever service at {base_url} failed ({error})"
    else:
        reason = f"the retriever service at {base_url} failed ({type(error).__name__}: {error})"
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return ServiceUnavailableError(f"the image index is unavailable: {reason} (after {tries})")


class _ClientBase:
    """What the sync and async clients share: configuration, URLs, response handling."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.base_url = base_url.rstrip("/") + "/"
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    @classmethod
    def _settings_kwargs(cls, settings: Settings) -> dict[str, Any]:
        key = settings.api_key.get_secret_value() if settings.api_key else None
        return {"base_url": settings.service_url, "api_key": key, "timeout": settings.service_timeout_s}

    @classmethod
    def like(cls, client: _ClientBase, **overrides: Any):
        """A client of this class configured like ``client`` (same URL, key, timeout, retries)."""
        config = {
            "base_url": client.base_url,
            "api_key": client.api_key,
            "timeout": client.timeout,
            "retries": client.retries,
            "backoff": client.backoff,
            "max_backoff": client.max_backoff,
        }
        return cls(**{**config, **overrides})

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "chatir-tools"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _retry_policy(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.retries + 1),
            "wait": wait_exponential(multiplier=self.backoff, max=self.max_backoff),
            "retry": retry_if_exception(_is_transient),
            "reraise": True,
        }

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 500:
            raise _TransientError(response)
        if response.status_code >= 400:
            raise _request_error(response)
        return response

    def url(self, path: str) -> str:
        """Absolute URL of a service path such as ``/v1/images/<id>`` (or an already absolute URL)."""
        return urljoin(self.base_url, path.lstrip("/")) if "://" not in path else path

    def image_url(self, hit: Hit | str) -> str:
        """URL of the full image behind a hit (or an image id)."""
        image_id = hit.id if isinstance(hit, Hit) else hit
        return self.url(_image_path(image_id))

    def thumbnail_url(self, hit: Hit | str) -> str:
        """URL of the hit's thumbnail (the service's own ``thumbnail_url`` made absolute)."""
        if isinstance(hit, Hit) and hit.thumbnail_url:
            return self.url(hit.thumbnail_url)
        image_id = hit.id if isinstance(hit, Hit) else hit
        return self.url(_image_path(image_id, "thumbnail"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, retries={self.retries}, timeout={self.timeout})"


def _image_path(image_id: str, suffix: str = "") -> str:
    path = f"/v1/images/{quote(image_id, safe='')}"
    return f"{path}/{suffix}" if suffix else path


def _thumbnail_params(allowed: Sequence[str] | None, size: int | None) -> dict[str, Any] | None:
    params: dict[str, Any] = dict(_scope_params(allowed) or {})
    if size is not None:
        params["size"] = int(size)
    return params or None


def _scope_params(allowed: Sequence[str] | None) -> dict[str, list[str]] | None:
    """Query parameters of a scoped image fetch (``None``: unscoped, for trusted callers)."""
    if allowed is None:
        return None
    if not allowed:  # an empty scope sees nothing; the service would read "no parameter" as unscoped
        raise ValueError("an empty scope can see no image")
    return {"allowed": list(allowed)}


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


class RetrieverClient(_ClientBase):
    """Blocking client: ``RetrieverClient("http://127.0.0.1:8600").search(SearchRequest(...))``.

    ``transport`` replaces the network (e.g. ``httpx.MockTransport`` or a WSGI transport) in tests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout=timeout, retries=retries, backoff=backoff, max_backoff=max_backoff
        )
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers(), timeout=timeout, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RetrieverClient:
        """Client for ``settings.service_url`` with ``CHATIR_API_KEY`` and ``CHATIR_SERVICE_TIMEOUT``."""
        return cls(**{**cls._settings_kwargs(settings), **overrides})

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempts = 0
        try:
            for attempt in Retrying(**self._retry_policy()):
                with attempt:
                    attempts += 1
                    return self._check(self._http.request(method, path.lstrip("/"), **kwargs))
        except (_TransientError, httpx.TransportError) as error:
            raise _unavailable(self.base_url, error, attempts) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def search(self, request: SearchRequest) -> SearchResponse:
        """Top-k images for a dialog (``POST /v1/search``)."""
        response = self._request("POST", "/v1/search", json=_json(request))
        return SearchResponse.model_validate(response.json())

    def search_pool(self, request: PoolRequest) -> PoolResponse:
        """Top-k ids, scores and embeddings for a dialog (``POST /v1/search/pool``)."""
        return PoolResponse.model_validate(
            self._request("POST", "/v1/search/pool", json=_json(request)).json()
        )

    def lookup(self, request: LookupRequest) -> LookupResponse:
        """Full hits for ids within a scope (``POST /v1/images/lookup``)."""
        return LookupResponse.model_validate(
            self._request("POST", "/v1/images/lookup", json=_json(request)).json()
        )

    def vectors(self, request: VectorsRequest) -> VectorsResponse:
        """Stored embeddings of ids within a scope (``POST /v1/images/vectors``)."""
        return VectorsResponse.model_validate(
            self._request("POST", "/v1/images/vectors", json=_json(request)).json()
        )

    def encode(self, dialog: Dialog | EncodeRequest) -> EncodeResponse:
        """The dialog's embedding (``POST /v1/encode``)."""
        request = dialog if isinstance(dialog, EncodeRequest) else EncodeRequest(dialog=dialog)
        return EncodeResponse.model_validate(self._request("POST", "/v1/encode", json=_json(request)).json())

    def encode_texts(self, texts: Sequence[str]) -> EncodeTextsResponse:
        """Plain texts' embeddings (``POST /v1/encode/texts``, in requests of at most 1,024 texts)."""
        vectors: list[list[float]] = []
        model = ""
        for start in range(0, len(texts), MAX_ENCODE_TEXTS):
            request = EncodeTextsRequest(texts=list(texts[start : start + MAX_ENCODE_TEXTS]))
            part = EncodeTextsResponse.model_validate(
                self._request("POST", "/v1/encode/texts", json=_json(request)).json()
            )
            vectors.extend(part.vectors)
            model = part.model
        return EncodeTextsResponse(vectors=vectors, model=model)

    def health(self) -> dict[str, Any]:
        """``GET /healthz``; raises ServiceUnavailableError when the service is down."""
        return self._request("GET", "/healthz").json()

    def ready(self) -> dict[str, Any]:
        """``GET /readyz``: the model and the index are loaded."""
        return self._request("GET", "/readyz").json()

    def image(self, image_id: str, *, allowed: Sequence[str] | None = None) -> bytes:
        """The original image bytes; with ``allowed``, only if the image is visible to those groups (else 404)."""
        return self._request("GET", _image_path(image_id), params=_scope_params(allowed)).content

    def thumbnail(
        self, image_id: str, *, allowed: Sequence[str] | None = None, size: int | None = None
    ) -> bytes:
        """The JPEG thumbnail bytes (what chat front-ends show); ``allowed`` as in :meth:`image`; ``size``: its
        longest side (16-2048; default the service's). Also how to show a HEIC, SVG or PDF original."""
        params = _thumbnail_params(allowed, size)
        return self._request("GET", _image_path(image_id, "thumbnail"), params=params).content

    def index(self, request: IndexRequest) -> IndexJob:
        """Index files on the service's machine (``POST /v1/index``); returns the job to poll."""
        return IndexJob.model_validate(self._request("POST", "/v1/index", json=_json(request)).json())

    def index_upload(
        self,
        files: Sequence[tuple[str, bytes]],
        *,
        source: str | None = None,
        allowed: Sequence[str] = (PUBLIC,),
        tags: Sequence[str] = (),
        owner: str | None = None,
        text: str | None = None,
    ) -> IndexJob:
        """Upload image bytes ``[(file name, bytes)]`` to be indexed (multipart ``POST /v1/index``)."""
        form: dict[str, Any] = {"allowed": list(allowed), "tags": list(tags)}
        for key, value in (("source", source), ("owner", owner), ("text", text)):
            if value:
                form[key] = value
        uploads = [("files", (name, data)) for name, data in files]
        return IndexJob.model_validate(self._request("POST", "/v1/index", data=form, files=uploads).json())

    def index_job(self, job_id: str) -> IndexJob:
        """Progress of an indexing job."""
        return IndexJob.model_validate(
            self._request("GET", f"/v1/index/jobs/{quote(job_id, safe='')}").json()
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRetrieverClient(_ClientBase):
    """Async twin of :class:`RetrieverClient` (same methods, awaited).

    ``transport`` replaces the network, e.g. ``httpx.ASGITransport(app=create_app(...))`` in tests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout=timeout, retries=retries, backoff=backoff, max_backoff=max_backoff
        )
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._loop: object | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> AsyncRetrieverClient:
        return cls(**{**cls._settings_kwargs(settings), **overrides})

    def _client(self) -> httpx.AsyncClient:
        # An httpx.AsyncClient is bound to the event loop that first used it; tools may be awaited from
        # several loops (tests, asyncio.run per request), so a client is kept per running loop.
        import asyncio

        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.is_closed:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers(),
                timeout=self.timeout,
                transport=self._transport,
            )
            self._loop = loop
        return self._http

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempts = 0
        http = self._client()
        try:
            async for attempt in AsyncRetrying(**self._retry_policy()):
                with attempt:
                    attempts += 1
                    return self._check(await http.request(method, path.lstrip("/"), **kwargs))
        except (_TransientError, httpx.TransportError) as error:
            raise _unavailable(self.base_url, error, attempts) from error
        raise AssertionError("unreachable")  # pragma: no cover

    async def search(self, request: SearchRequest) -> SearchResponse:
        response = await self._request("POST", "/v1/search", json=_json(request))
        return SearchResponse.model_validate(response.json())

    async def search_pool(self, request: PoolRequest) -> PoolResponse:
        response = await self._request("POST", "/v1/search/pool", json=_json(request))
        return PoolResponse.model_validate(response.json())

    async def lookup(self, request: LookupRequest) -> LookupResponse:
        response = await self._request("POST", "/v1/images/lookup", json=_json(request))
        return LookupResponse.model_validate(response.json())

    async def vectors(self, request: VectorsRequest) -> VectorsResponse:
        response = await self._request("POST", "/v1/images/vectors", json=_json(request))
        return VectorsResponse.model_validate(response.json())

    async def encode(self, dialog: Dialog | EncodeRequest) -> EncodeResponse:
        request = dialog if isinstance(dialog, EncodeRequest) else EncodeRequest(dialog=dialog)
        response = await self._request("POST", "/v1/encode", json=_json(request))
        return EncodeResponse.model_validate(response.json())

    async def encode_texts(self, texts: Sequence[str]) -> EncodeTextsResponse:
        vectors: list[list[float]] = []
        model = ""
        for start in range(0, len(texts), MAX_ENCODE_TEXTS):
            request = EncodeTextsRequest(texts=list(texts[start : start + MAX_ENCODE_TEXTS]))
            response = await self._request("POST", "/v1/encode/texts", json=_json(request))
            part = EncodeTextsResponse.model_validate(response.json())
            vectors.extend(part.vectors)
            model = part.model
        return EncodeTextsResponse(vectors=vectors, model=model)

    async def health(self) -> dict[str, Any]:
        return (await self._request("GET", "/healthz")).json()

    async def ready(self) -> dict[str, Any]:
        return (await self._request("GET", "/readyz")).json()

    async def image(self, image_id: str, *, allowed: Sequence[str] | None = None) -> bytes:
        return (await self._request("GET", _image_path(image_id), params=_scope_params(allowed))).content

    async def thumbnail(
        self, image_id: str, *, allowed: Sequence[str] | None = None, size: int | None = None
    ) -> bytes:
        path = _image_path(image_id, "thumbnail")
        return (await self._request("GET", path, params=_thumbnail_params(allowed, size))).content

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
