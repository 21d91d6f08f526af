"""Front-end commands: ``chatir slack``, ``chatir demo`` and ``chatir chat``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds the front-end commands to the ``chatir`` app."""
    from frontends.slack.cli import register as register_slack

    register_slack(app)
