"""``chatir models pull|check``: provisioning the retriever's model as its own step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(
    help="Provision the retriever's model: pull it from the Hugging Face hub, check a model folder.",
    no_args_is_help=True,
)


@models_app.command("pull")
def pull(
    model_id: Annotated[str, typer.Argument(help="Hub id, e.g. Salesforce/blip-itm-base-coco.")],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to", help="Write the model into this folder (default: the Hugging Face cache, HF_HOME)."
        ),
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit (default: main).")] = None,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Load it afterwards and print its report.")
    ] = True,
) -> None:
    """Download a model from the hub (with progress; an interrupted pull resumes), then check it."""
    from retriever_service.models.provision import pull_model

    folder = pull_model(model_id, to=to, revision=revision)
    typer.echo(f"pulled {model_id} into {folder}")
    if check:
        _print_check(str(folder) if to is not None else model_id)
    use = str(folder) if to is not None else model_id
    typer.echo(f"use it with CHATIR_MODEL={use}")


@models_app.command("check")
def check(
    path: Annotated[str, typer.Argument(help="Model folder, hub id already pulled, or 'starter'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Load a model through the service's loader; print its family, dimension, text window and weights checksum."""
    _print_check(path, as_json=as_json)


def _print_check(name: str, *, as_json: bool = False) -> None:
    from retriever_service.models.provision import check_model

    report = check_model(name)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    typer.echo(f"model:       {report.model}")
    typer.echo(f"family:      {report.family}")
    typer.echo(f"dimension:   {report.dim}")
    typer.echo(f"text window: {report.max_text_tokens} tokens")
    typer.echo(f"weights:     {', '.join(report.weight_files)} ({report.weight_bytes:,} bytes)")
    typer.echo(f"checksum:    {report.checksum}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
