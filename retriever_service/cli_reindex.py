"""``chatir reindex --model NEW`` and ``chatir collections list|drop``: changing the model without downtime.

The embedded store admits one process: when a running service holds it, the reindex runs inside that service
(``POST /v1/reindex``) and this command follows its progress. Otherwise (no service, or a Qdrant server) it runs
here; a service on a Qdrant server follows the switch by itself (it polls the alias) and this command then carries
over what that service wrote to the old collection before it followed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chatir.errors import ChatIRError

if TYPE_CHECKING:
    from chatir.settings import Settings

collections_app = typer.Typer(
    help="The index's collections: one per model since `chatir reindex`.", no_args_is_help=True
)


def reindex(
    model: Annotated[str, typer.Option("--model", help="Hub id or folder of the new model.")],
    drop_old: Annotated[
        bool, typer.Option("--drop-old", help="Delete the old collection once the new one serves.")
    ] = False,
) -> None:
    """Build the index for another model while the current one keeps serving (resumable), then switch atomically."""
    from chatir.settings import get_settings
    from retriever_service import cli

    settings = cli._follow_run_file(get_settings())
    if cli._service_holds_store(settings):
        typer.echo(f"a running service at {settings.service_url} holds the store; reindexing inside it")
        job = _reindex_via_service(settings, model, drop_old)
        if job.state == "failed":
            raise ChatIRError(
                f"The reindex failed in the service (it still serves the old index): {job.error}"
            )
        typer.echo(
            f"{job.added} embedded, {job.unchanged} carried over from a stopped run; now serving {model}"
        )
        _print_missing(job.skipped)
        return
    _reindex_here(settings, model, drop_old)
    typer.echo(f"set CHATIR_MODEL={model} where the service is configured, for its next start")


def _reindex_here(settings: Settings, model_name: str, drop_old: bool) -> None:
    from tqdm import tqdm

    from retriever_service.index import collections
    from retriever_service.index.reindex import catch_up, reindex
    from retriever_service.model_switch import slack_refetcher
    from retriever_service.models import load_model

    source = _open_serving_index(settings)
    try:
        new_model = load_model(model_name, device=settings.device, settings=settings)
        typer.echo(
            f"reindexing the {source.where} from {source.model_id} to {new_model.model_id}; "
            f"{source.collection!r} keeps serving meanwhile"
        )
        bar = tqdm(desc="reindex", unit="image")

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            report, target = reindex(
                settings=settings,
                source=source,
                model=new_model,
                refetch=slack_refetcher(settings),
                progress=progress,
                batch_size=settings.batch_size,
            )
        finally:
            bar.close()
        try:
            if settings.qdrant_url and _wait_for_service_model(settings, new_model.model_id):
                catch_up(
                    source=source,
                    target=target,
                    model=new_model,
                    report=report,
                    refetch=slack_refetcher(settings),
                )
        finally:
            target.close()
        typer.echo(
            f"switched to {report.target!r}: {report.embedded} embedded, {report.resumed} carried over from a "
            f"stopped run, {report.refetched} fetched again from Slack, {report.updated} updated and "
            f"{report.removed} removed during the build"
        )
        _print_missing([m.model_dump() for m in report.missing])
        if drop_old:
            collections.drop(source.client, settings, report.source)
            typer.echo(f"dropped the old collection {report.source!r}")
        else:
            typer.echo(
                f"the old collection {report.source!r} is kept: `chatir collections drop {report.source}`"
            )
    finally:
        source.close()


def _open_serving_index(settings: Settings) -> Any:
    """The serving collection, opened for the model it records (the reindex needs its records, not its model)."""
    from retriever_service.index import ImageIndex, collections

    client = _client_or_explain(settings)
    try:
        active = collections.active_collection(client, settings.collection)
        info = next((c for c in collections.family(client, settings.collection) if c.name == active), None)
        if info is None or info.model is None or info.dim is None:
            raise ChatIRError(
                f"There is no index to reindex in collection {settings.collection!r}: run `chatir index`."
            )
        index = ImageIndex(settings, info.model, info.dim, collection=active, client=client)
        index.owns_client = True
        return index
    except BaseException:
        client.close()
        raise


def _wait_for_service_model(settings: Settings, model_id: str, timeout_s: float = 60.0) -> bool:
    """Wait until a service answering at ``service_url`` serves ``model_id``; False when none answers."""
    import httpx

    from retriever_service import cli

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with cli._client(settings, timeout=cli.PROBE_TIMEOUT_S) as client:
                response = client.get("/readyz")
        except httpx.HTTPError:
            return False
        if response.status_code == 200 and response.json().get("model") == model_id:
            return True
        time.sleep(1.0)
    typer.echo(
        f"the service at {settings.service_url} did not follow the switch within {timeout_s:.0f} s", err=True
    )
    return False


def _reindex_via_service(settings: Settings, model: str, drop_old: bool) -> Any:
    from chatir.schemas import ReindexRequest
    from retriever_service import cli

    body = ReindexRequest(model=model, drop_old=drop_old).model_dump(mode="json")
    return cli.run_service_job(settings, "/v1/reindex", body, desc="reindex (service)", unit="image")


def _print_missing(missing: list[dict[str, str]]) -> None:
    if missing:
        typer.echo(
            f"{len(missing)} image(s) left behind (they stay in the old collection until it is dropped):"
        )
        for item in missing:
            typer.echo(f"  {item.get('path')}: {item.get('reason')}")


@collections_app.command("list")
def list_collections() -> None:
    """The collections of CHATIR_COLLECTION: model, size, and which one serves."""
    from chatir.settings import get_settings
    from retriever_service.index import collections

    settings = get_settings()
    client = _client_or_explain(settings)
    try:
        found = collections.family(client, settings.collection)
    finally:
        client.close()
    if not found:
        typer.echo(f"no collection for {settings.collection!r} yet")
    for info in found:
        mark = "*" if info.active else " "
        typer.echo(f"{mark} {info.name:<60} {info.images:>8} images  {info.model} ({info.dim}-d)")


@collections_app.command("drop")
def drop_collection(name: Annotated[str, typer.Argument(help="A collection that no longer serves.")]) -> None:
    """Delete a collection a reindex left behind (never the serving one)."""
    from chatir.settings import get_settings
    from retriever_service.index import collections

    settings = get_settings()
    client = _client_or_explain(settings)
    try:
        collections.drop(client, settings, name)
    finally:
        client.close()
    typer.echo(f"dropped {name!r}")


def _client_or_explain(settings: Settings) -> Any:
    from retriever_service.errors import is_store_lock_error, store_locked_message
    from retriever_service.index.store import connect

    try:
        return connect(settings)
    except Exception as error:
        if is_store_lock_error(error):
            raise ChatIRError(store_locked_message(settings)) from error
        raise


def register(app: typer.Typer) -> None:
    app.command("reindex")(reindex)
    app.add_typer(collections_app, name="collections")
