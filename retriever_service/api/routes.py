"""The endpoints: thin async wrappers that run :class:`RetrieverService` calls in the thread pool."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from chatir.notices import model_notice
from chatir.runfile import store_fingerprint
from chatir.schemas import (
    PUBLIC,
    DeleteResponse,
    EncodeRequest,
    EncodeResponse,
    EncodeTextsRequest,
    EncodeTextsResponse,
    ErrorResponse,
    HealthResponse,
    IndexJob,
    IndexRequest,
    LookupRequest,
    LookupResponse,
    PoolRequest,
    PoolResponse,
    ReadyResponse,
    ReindexRequest,
    SearchRequest,
    SearchResponse,
    VectorsRequest,
    VectorsResponse,
)
from retriever_service.api.security import bearer_scheme
from retriever_service.api.state import get_service
from retriever_service.service import UPLOAD_SOURCE, RetrieverService

Service = Annotated[RetrieverService, Depends(get_service)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "Missing or wrong bearer token (only when the service sets CHATIR_API_KEY).",
        403: "Indexing a path outside CHATIR_INDEX_ROOTS (or by path while it is unset).",
        413: "Request body too large.",
        422: "Invalid request; `error` names the field (e.g. dialog.caption).",
        503: "Model not loaded yet or vector store unreachable.",
    }.items()
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such image or job."}
}

_Allowed = Annotated[
    list[str] | None,
    Query(
        max_length=1000,
        description="The caller's visibility groups (repeat the parameter). When given, an image outside "
        "them is answered 404, exactly like a missing one. Scoped callers (chat front-ends) always send it.",
    ),
]

health = APIRouter(tags=["health"])
v1 = APIRouter(prefix="/v1", dependencies=[Security(bearer_scheme)], responses=_ERRORS)


@health.get("/healthz", response_model=HealthResponse, summary="The process is alive")
async def healthz(request: Request) -> HealthResponse:
    return HealthResponse(store_id=store_fingerprint(request.app.state.settings))


@health.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Model loaded and index reachable (503 otherwise)",
    responses={503: _ERRORS[503]},
)
async def readyz(service: Service) -> ReadyResponse:
    images = await run_in_threadpool(service.count)
    return ReadyResponse(
        model=service.model_id,
        images=images,
        store_id=store_fingerprint(service.settings),
        notice=model_notice(service.model_id),
    )


@v1.post("/search", response_model=SearchResponse, summary="Top-k images for a dialog")
async def search(body: SearchRequest, service: Service) -> SearchResponse:
    """Encodes the dialog and returns the best images, best first. `filter` and `exclude_ids` are applied
    inside the vector query. `thumbnail_url` of each hit is relative to the service's base URL."""
    return await run_in_threadpool(service.search, body)


@v1.post(
    "/search/pool",
    response_model=PoolResponse,
    summary="Top-k ids, scores and embeddings (a re-ranker's pool)",
)
async def search_pool(body: PoolRequest, service: Service) -> PoolResponse:
    """The same ranking as `POST /v1/search`, as ids, cosines and one base64 float32 matrix of the images'
    embeddings: what a client that re-ranks a large pool reads, without building a full hit per image. Fetch
    the hits it keeps with `POST /v1/images/lookup`."""
    return await run_in_threadpool(service.search_pool, body)


@v1.post("/images/lookup", response_model=LookupResponse, summary="Full hits for known ids, within a scope")
async def lookup(body: LookupRequest, service: Service) -> LookupResponse:
    """Each id's hit (score 0), in the order asked. Ids outside `filter` / in `exclude_ids`, and unknown ids,
    are left out alike: a lookup shows no more than a search with the same scope."""
    return await run_in_threadpool(service.lookup, body)


@v1.post(
    "/images/vectors",
    response_model=VectorsResponse,
    summary="Stored embeddings of known ids, within a scope",
)
async def image_vectors(body: VectorsRequest, service: Service) -> VectorsResponse:
    """The ids' stored embeddings as one base64 float32 matrix, in the order asked, with the embedding `space`
    (as `POST /v1/search/pool` names it). Ids outside `filter` / in `exclude_ids`, and unknown ids, are left
    out alike. What a client that keeps the embeddings it has seen asks for the ones a pool brought new."""
    return await run_in_threadpool(service.vectors, body)


@v1.post("/encode", response_model=EncodeResponse, summary="Embed a dialog")
async def encode(body: EncodeRequest, service: Service) -> EncodeResponse:
    """The dialog's L2-normalised embedding in the image space, and the text actually encoded."""
    return await run_in_threadpool(service.encode, body.dialog)


@v1.post("/encode/texts", response_model=EncodeTextsResponse, summary="Embed plain texts (batch)")
async def encode_texts(body: EncodeTextsRequest, service: Service) -> EncodeTextsResponse:
    """Each text's L2-normalised embedding in the image space, as it is (no dialog joining): what clients
    that score answers against images (the LLM-free questioners) need, from the same model as the index."""
    return await run_in_threadpool(service.encode_texts, body)


_UPLOAD_FORM = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "source": {"type": "string", "default": UPLOAD_SOURCE},
        "allowed": {"type": "array", "items": {"type": "string"}, "default": [PUBLIC]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "owner": {"type": "string"},
        "text": {"type": "string", "description": "Free text of the images (default: each file's name)."},
    },
}


@v1.post(
    "/index",
    response_model=IndexJob,
    status_code=202,
    summary="Index files (paths on the service's machine, or uploads)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": IndexRequest.model_json_schema()},
                "multipart/form-data": {"schema": _UPLOAD_FORM},
            },
        }
    },
)
async def index(request: Request, service: Service) -> JSONResponse:
    """Starts an indexing job in the background and returns it (poll `GET /v1/index/jobs/{id}`).

    JSON: `paths` (files or folders the service can read, recursive). Multipart: one or more `files`,
    stored under `CHATIR_HOME/uploads` (at most `CHATIR_MAX_UPLOAD_MB` in all)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        body = await _uploaded_index_request(request, service)
    else:
        body = _parse(IndexRequest, await request.body())
    job = await run_in_threadpool(service.submit_index, body)
    return JSONResponse(job.model_dump(mode="json"), status_code=202)


@v1.get("/index/jobs/{job_id}", response_model=IndexJob, responses=_NOT_FOUND, summary="Progress of a job")
async def index_job(job_id: str, service: Service) -> IndexJob:
    return service.job(job_id)


@v1.post("/reindex", response_model=IndexJob, status_code=202, summary="Move the index to another model")
async def reindex(body: ReindexRequest, service: Service) -> IndexJob:
    """Builds the index for `model` while the current one keeps serving, switches atomically and serves the new
    model (a job: poll `GET /v1/index/jobs/{id}`). Resumable: submitted again, it carries on where it stopped."""
    return await run_in_threadpool(service.submit_reindex, body.model, drop_old=body.drop_old)


@v1.get(
    "/images/{image_id}",
    response_class=FileResponse,
    responses={**_NOT_FOUND, 200: {"content": {"image/*": {}}, "description": "The original file."}},
    summary="The original image file",
)
async def image(image_id: str, service: Service, allowed: _Allowed = None) -> FileResponse:
    path, mime = await run_in_threadpool(service.image_file, image_id, allowed)
    # an SVG original opened in a browser must not run its scripts or load anything: sandboxed, no sniffing
    headers = {
        "Cache-Control": "private, max-age=3600",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        "X-Content-Type-Options": "nosniff",
    }
    return FileResponse(path, media_type=mime, headers=headers)


@v1.get(
    "/images/{image_id}/thumbnail",
    response_class=FileResponse,
    responses={**_NOT_FOUND, 200: {"content": {"image/jpeg": {}}, "description": "JPEG thumbnail."}},
    summary="JPEG thumbnail (longest side `size`, default CHATIR_THUMBNAIL_SIZE; never enlarged)",
)
async def thumbnail(
    image_id: str,
    service: Service,
    size: Annotated[int | None, Query(ge=16, le=2048)] = None,
    allowed: _Allowed = None,
) -> FileResponse:
    path = await run_in_threadpool(service.thumbnail, image_id, size, allowed)
    # ids are content hashes: a thumbnail for (id, size) never changes
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@v1.delete(
    "/images/{image_id}", response_model=DeleteResponse, responses=_NOT_FOUND, summary="Remove an image"
)
async def delete_image(image_id: str, service: Service) -> DeleteResponse:
    """Removes the image from the index (files in your folders are left alone; uploads are deleted)."""
    await run_in_threadpool(service.delete, image_id)
    return DeleteResponse(id=image_id)


# --- helpers ---------------------------------------------------------------------------------------
def _parse(model: type[IndexRequest], raw: bytes) -> IndexRequest:
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as error:
        raise RequestValidationError(_in_body(error)) from None


def _in_body(error: ValidationError) -> list[dict[str, Any]]:
    errors = error.errors(include_url=False, include_context=False)
    return [{**e, "loc": ("body", *e["loc"])} for e in errors]


async def _uploaded_index_request(request: Request, service: RetrieverService) -> IndexRequest:
    async with request.form(max_files=1000, max_fields=200) as form:
        uploads = [f for key in ("files", "file") for f in form.getlist(key) if isinstance(f, UploadFile)]
        if not uploads:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "files"),
                        "msg": "no files uploaded (multipart field 'files')",
                        "type": "missing",
                    }
                ]
            )
        paths = []
        for upload in uploads:
            path, _ = await run_in_threadpool(service.save_upload, upload.filename, upload.file)
            paths.append(str(path))
        fields = {
            "paths": paths,
            "source": _text(form.get("source")) or UPLOAD_SOURCE,
            "allowed": [_text(v) for v in form.getlist("allowed")] or [PUBLIC],
            "tags": [_text(v) for v in form.getlist("tags")],
            "owner": _text(form.get("owner")),
            "text": _text(form.get("text")),
        }
    try:
        return IndexRequest.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(_in_body(error)) from None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
