"""The ``chatir`` command. Each area registers its own subcommands; this module only assembles them.

Subcommand modules keep their imports light (torch, transformers and friends are imported inside the
commands) so that ``chatir --help`` is instant.
"""

from __future__ import annotations

import importlib
import sys

import typer

from chatir.errors import ChatIRError

app = typer.Typer(
    name="chatir",
    help="Chat-based image retrieval: index images, serve the retriever, chat, evaluate, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module exposes ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = (
    "retriever_service.cli",  # serve, search, index, convert-checkpoint
    "training.cli",  # train, starter
    "world.cli",  # world generate / dialogs
    "evaluation.cli",  # eval
    "tools.cli",  # mcp
    "frontends.cli",  # demo, chat, slack
    "frontends.stats",  # stats (the outcome log)
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Entry point: runs the app and turns :class:`ChatIRError` into one clear line on stderr."""
    try:
        app()
    except ChatIRError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
