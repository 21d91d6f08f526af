"""``chatir serve | search | index | convert-checkpoint``: the retriever's commands.

Imports stay light here (torch, transformers, uvicorn are imported inside the commands). The embedded
store can be open in one process only: ``search`` and ``index`` talk to a running service that holds
it, and open the store themselves only when no such service answers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chatir.errors import ChatIRError, ServiceUnavailableError

if TYPE_CHECKING:
    import httpx

    from chatir.schemas import IndexJob, IndexRequest, SearchRequest, SearchResponse
    from chatir.settings import Settings
    from chatir.shard import Shard

PROBE_TIMEOUT_S = 2.0
"""How long ``search``/``index`` wait for a service to answer before working locally."""


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("search")(search)
    app.command("index")(index)
    app.command("convert-checkpoint")(convert_checkpoint)
    app.command("migrate-index")(migrate_index)
    from retriever_service import cli_models, cli_reindex  # models pull|check; reindex, collections

    cli_models.register(app)
    cli_reindex.register(app)


# --- serve -----------------------------------------------------------------------------------------
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default CHATIR_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CHATIR_PORT).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the retriever service (HTTP API; OpenAPI at /docs)."""
    import logging

    import uvicorn

    from chatir import runfile
    from chatir.notices import model_notice
    from chatir.settings import get_settings
    from retriever_service.api import create_app

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    service_log = logging.getLogger("retriever_service")  # uvicorn configures only its own loggers
    service_log.addHandler(handler)
    service_log.setLevel(log_level.upper())
    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    failure: list[str] = []
    server: uvicorn.Server | None = None

    def stop_serving(reason: str) -> None:
        # a service that cannot open its model or store would only answer 503: stop, and say why
        failure.append(reason)
        if server is not None:
            server.should_exit = True

    typer.echo(
        f"serving model {settings.model} on http://{host}:{port} (readiness: /readyz, API docs: /docs)"
    )
    notice = model_notice(settings.model)
    if notice:
        typer.secho(f"note: {notice}", fg=typer.colors.YELLOW)
    app = create_app(settings, announce_url=runfile.local_url(host, port), on_load_failure=stop_serving)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    server.run()
    if failure:
        typer.echo(f"error: the retriever service could not start: {failure[0]}", err=True)
        raise typer.Exit(1)


# --- search ----------------------------------------------------------------------------------------
def search(
    text: Annotated[str, typer.Argument(help="What you are looking for (the dialog's caption).")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=100, help="How many hits.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the SearchResponse as JSON.")] = False,
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="Only images visible to this group.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only images with this tag.")] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only images from this source.")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Image id to leave out.")] = None,
) -> None:
    """Search the index: through the running service, or the local store when no service answers."""
    from chatir.dialog import Dialog
    from chatir.schemas import SearchFilter, SearchRequest
    from chatir.settings import get_settings

    settings = _follow_run_file(get_settings())
    search_filter = None
    if allow or tag or source:
        search_filter = SearchFilter(allowed=allow or None, tags=tag or None, sources=source or None)
    request = SearchRequest(dialog=Dialog(caption=text), k=k, filter=search_filter, exclude_ids=exclude or [])

    response = _search_via_service(settings, request)
    if response is not None:
        via = f"service at {settings.service_url}"
    else:
        response = _search_locally(settings, request)
        via = f"local {_store_label(settings)} (no service answered at {settings.service_url})"
    typer.echo(f"searched via {via}", err=True)
    if as_json:
        typer.echo(response.model_dump_json(indent=2))
        return
    if not response.hits:
        typer.echo("no matching images")
        return
    typer.echo(f"{'rank':>4}  {'score':>7}  {'id':<32}  uri")
    for rank, hit in enumerate(response.hits, 1):
        typer.echo(f"{rank:>4}  {hit.score:7.4f}  {hit.id:<32}  {hit.uri}")


def _search_via_service(settings: Settings, request: SearchRequest) -> SearchResponse | None:
    """The service's answer, or None when no service listens at ``settings.service_url``."""
    import httpx

    from chatir.schemas import SearchResponse

    try:
        with _client(settings) as client:
            response = _request(client, settings, "POST", "/v1/search", json=request.model_dump(mode="json"))
    except (httpx.ConnectError, httpx.ConnectTimeout):
        return None
    except httpx.HTTPError as error:
        raise ServiceUnavailableError(f"The service at {settings.service_url} failed: {error}") from error
    _raise_for_error(response, settings)
    return SearchResponse.model_validate(response.json())


def _search_locally(settings: Settings, request: SearchRequest) -> SearchResponse:
    with _open_service(settings) as service:
        return service.search(request)


# --- index -----------------------------------------------------------------------------------------
def index(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (recursive).")],
    prune: Annotated[bool, typer.Option("--prune", help="Remove entries whose files are gone.")] = False,
    source: Annotated[str | None, typer.Option(help="Source label (default: the folder).")] = None,
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="Group allowed to see these images (default: public).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag to attach.")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner to record.")] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Index only shard I of N (I from 0: 0/3, 1/3, 2/3), a stable share by a hash of each file's path "
            "relative to the folder given, so N processes (a Kubernetes Indexed Job: $(JOB_COMPLETION_INDEX)/N) "
            "split one input into one collection; run a shard again to resume it.",
        ),
    ] = None,
) -> None:
    """Index images: incremental, deduplicated; bad files are skipped and listed at the end."""
    from chatir.schemas import PUBLIC, IndexRequest
    from chatir.settings import get_settings

    parsed_shard = _parse_shard(shard)
    settings = _follow_run_file(get_settings())
    missing = [str(p) for p in paths if not p.expanduser().exists()]
    if missing:
        raise ChatIRError(f"No such file or folder: {', '.join(missing)}")
    request = IndexRequest(
        paths=[str(p.expanduser().resolve()) for p in paths],
        source=source,
        allowed=allow or [PUBLIC],
        tags=tag or [],
        owner=owner,
        prune=prune,
        shard=parsed_shard,
    )
    if parsed_shard is not None:
        typer.echo(f"shard {parsed_shard} of the files under {', '.join(request.paths)}")
    if _service_holds_store(settings):
        typer.echo(
            f"a running service at {settings.service_url} holds the {_store_label(settings)}; indexing through it"
        )
        job = _index_via_service(settings, request)
        _print_report(_job_report(job))
        if job.state == "failed":
            raise ChatIRError(f"Indexing failed in the service: {job.error}")
        return
    with _open_service(settings) as service:
        typer.echo(f"indexing into the {_store_label(settings)} with model {service.model_id}")
        report = service.run_index(request)
    _print_report(_local_report(report))


def _parse_shard(text: str | None) -> Shard | None:
    from chatir.shard import InvalidShardError, Shard

    if text is None:
        return None
    try:
        return Shard.parse(text)
    except InvalidShardError as error:
        raise typer.BadParameter(str(error), param_hint="--shard") from error


def _follow_run_file(settings: Settings) -> Settings:
    """``settings`` aimed at the service that announced this store (:mod:`chatir.runfile`) when nothing answers
    at ``service_url`` (a demo or service that took another port because the usual one was busy)."""
    import httpx

    from chatir import runfile

    announced = runfile.holder(settings)
    if announced is None or announced.url == settings.service_url.rstrip("/"):
        return settings
    try:
        httpx.get(settings.service_url.rstrip("/") + "/healthz", timeout=PROBE_TIMEOUT_S)
        return settings  # something answers where it was told to look: that is what the user asked for
    except httpx.HTTPError:
        return settings.model_copy(update={"service_url": announced.url})


def _service_holds_store(settings: Settings) -> bool:
    """True when a service answers at ``service_url`` and uses this very embedded store."""
    if settings.qdrant_url:
        return False  # a server store takes writers from several processes
    import httpx

    from chatir.runfile import store_fingerprint

    try:
        with _client(settings, timeout=PROBE_TIMEOUT_S) as client:
            response = client.get("/healthz")
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    try:
        return response.json().get("store_id") == store_fingerprint(settings)
    except ValueError:
        return False


def _index_via_service(settings: Settings, request: IndexRequest) -> IndexJob:
    return run_service_job(
        settings, "/v1/index", request.model_dump(mode="json"), desc="indexing (service)", unit="file"
    )


def run_service_job(settings: Settings, path: str, body: dict[str, Any], *, desc: str, unit: str) -> IndexJob:
    """POST a job to the running service (``/v1/index``, ``/v1/reindex``) and follow it with a progress bar
    until it is done or failed."""
    import httpx
    from tqdm import tqdm

    from chatir.schemas import IndexJob

    try:
        with _client(settings) as client:
            response = _request(client, settings, "POST", path, json=body)
            _raise_for_error(response, settings)
            job = IndexJob.model_validate(response.json())
            with tqdm(desc=desc, unit=unit) as bar:
                while job.state not in ("done", "failed"):
                    time.sleep(0.5)
                    response = client.get(f"/v1/index/jobs/{job.id}")
                    _raise_for_error(response, settings)
                    job = IndexJob.model_validate(response.json())
                    bar.total = job.total or None
                    bar.n = job.done
                    bar.refresh()
    except httpx.HTTPError as error:
        raise ServiceUnavailableError(f"Lost the service at {settings.service_url}: {error}") from error
    return job


def _job_report(job: IndexJob) -> dict[str, Any]:
    return {
        "added": job.added,
        "unchanged": job.unchanged,
        "duplicates": job.duplicates,
        "pruned": job.pruned,
        "other_shards": job.other_shards,
        "skipped": [(s.get("path", "?"), s.get("reason", "?")) for s in job.skipped],
    }


def _local_report(report: Any) -> dict[str, Any]:
    from retriever_service.jobs import job_fields

    fields = job_fields(report)
    return {**fields, "skipped": [(s["path"], s["reason"]) for s in fields.get("skipped", [])]}


def _print_report(report: dict[str, Any]) -> None:
    counts = ", ".join(
        f"{report.get(name, 0)} {name}" for name in ("added", "unchanged", "duplicates", "pruned")
    )
    typer.echo(counts)
    if report.get("other_shards"):
        typer.echo(f"{report['other_shards']} file(s) left to the other shards")
    skipped = report.get("skipped") or []
    if skipped:
        typer.echo(f"skipped {len(skipped)} file(s):")
        for path, reason in skipped:
            typer.echo(f"  {path}: {reason}")


# --- migrate-index ---------------------------------------------------------------------------------
def migrate_index(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL",
            help="Where to copy the collection: a Qdrant server (http://qdrant:6333, https://...) or another ChatIR "
            "home on this machine (path:/srv/chatir or file:///srv/chatir: its embedded store <home>/qdrant).",
        ),
    ],
    collection: Annotated[
        str | None, typer.Option(help="Target collection (default: the source's, CHATIR_COLLECTION).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Points per read and write.")] = 256,
    sample: Annotated[
        int, typer.Option(min=0, help="Random points whose vectors and payloads are compared at the end.")
    ] = 256,
    verify_only: Annotated[bool, typer.Option("--verify-only", help="Copy nothing; only compare.")] = False,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the target server's API key (if it has one).")
    ] = "QDRANT_API_KEY",
) -> None:
    """Copy the image index (the embedded store of CHATIR_HOME, or QDRANT_URL's) into another Qdrant store.

    Ids, vectors, payloads and the collection's model are copied in batches; run it again to resume (points
    already there with equal content are skipped). Verified at the end by counts and a random sample of
    vectors: a mismatch exits with status 1. A target collection of another model is refused. Stop the
    service that holds an embedded store first."""
    import os

    from chatir.settings import get_settings
    from retriever_service.index.migrate import migrate_collection, target_settings

    source = get_settings()
    target = target_settings(source, to, collection=collection, api_key=os.environ.get(api_key_env) or None)
    typer.echo(
        f"migrating collection {source.collection!r}: {_store_label(source)} -> {_store_label(target)}"
    )
    report = migrate_collection(source, target, batch_size=batch_size, sample=sample, verify_only=verify_only)
    if not verify_only:
        typer.echo(
            f"{report.copied} copied, {report.updated} updated, {report.unchanged} already there "
            f"({report.model}, {report.dim}-d)"
        )
    typer.echo(
        f"verified: {report.target_count} points in both, {report.sampled} sampled vectors and payloads equal"
    )


# --- convert-checkpoint ----------------------------------------------------------------------------
def convert_checkpoint(
    src: Annotated[Path, typer.Argument(help="ChatIR's chatir_weights.ckpt (salesforce/BLIP key layout).")],
    dst: Annotated[Path, typer.Argument(help="Folder to write the transformers BLIP model to.")],
    processor: Annotated[
        Path | None,
        typer.Option(help="Folder with the BLIP tokenizer to use (default: bundled bert-base-uncased)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="BlipConfig (config.json or its folder); inferred from the weights if omitted."),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Allow Python objects in the file (only for files you trust)."),
    ] = False,
) -> None:
    """Convert the published ChatIR retriever checkpoint into a transformers BLIP model folder."""
    from retriever_service.models.convert_blip import convert_chatir_checkpoint

    out = convert_chatir_checkpoint(src, dst, config, processor=processor, trust_pickle=trust_pickle)
    typer.echo(f"wrote {out} (use it with CHATIR_MODEL={out})")


# --- helpers ---------------------------------------------------------------------------------------
STARTUP_WAIT_S = 120.0
"""How long the CLI waits for a service that is still loading its model."""


def _request(
    client: httpx.Client, settings: Settings, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """One call; when the service answers that it is still starting, wait for /readyz and retry once."""
    response = client.request(method, path, **kwargs)
    if not _is_starting(response):
        return response
    typer.echo(f"waiting for the service at {settings.service_url} to finish loading ...", err=True)
    deadline = time.monotonic() + max(STARTUP_WAIT_S, settings.service_timeout_s)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        ready = client.get("/readyz")
        if ready.status_code == 200:
            return client.request(method, path, **kwargs)
        if not _is_starting(ready):
            return ready
    return response


def _is_starting(response: httpx.Response) -> bool:
    if response.status_code != 503:
        return False
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return False
    return isinstance(detail, dict) and detail.get("state") == "starting"


def _client(settings: Settings, timeout: float | None = None) -> httpx.Client:
    import httpx

    headers = {}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    return httpx.Client(
        base_url=settings.service_url,
        headers=headers,
        timeout=httpx.Timeout(
            timeout or settings.service_timeout_s, connect=min(PROBE_TIMEOUT_S, timeout or 1e9)
        ),
    )


def _raise_for_error(response: httpx.Response, settings: Settings) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        message = body.get("error") or response.reason_phrase
        detail = body.get("detail")
    except (ValueError, AttributeError):
        message, detail = response.reason_phrase, response.text[:200]
    suffix = f" ({json.dumps(detail)})" if detail else ""
    if response.status_code == 401:
        raise ChatIRError(
            f"The service at {settings.service_url} refused the request: {message}{suffix}. Set CHATIR_API_KEY."
        )
    if response.status_code == 503:
        raise ServiceUnavailableError(f"The service at {settings.service_url} is not ready: {message}")
    raise ChatIRError(
        f"The service at {settings.service_url} answered {response.status_code}: {message}{suffix}"
    )


def _open_service(settings: Settings):  # -> RetrieverService (a context manager)
    from retriever_service.service import RetrieverService

    return RetrieverService.open(settings)


def _store_label(settings: Settings) -> str:
    from retriever_service.errors import store_description

    return store_description(settings)
