"""``chatir slack`` (run the bot) and ``chatir slack-backfill CHANNEL`` (index a channel's history)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("slack")
    def slack(
        http: bool = typer.Option(
            False, "--http", help="HTTP mode (events at /slack/events) instead of Socket Mode."
        ),
        host: str = typer.Option("0.0.0.0", help="HTTP mode: address to listen on."),
        port: int = typer.Option(3000, help="HTTP mode: port to listen on."),
    ) -> None:
        """Run the Slack bot (Socket Mode by default; needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN)."""
        import logging

        from chatir.settings import get_settings
        from frontends.slack.app import create_slack_app, serve_http, serve_socket_mode

        logging.basicConfig(level=logging.INFO)
        from chatir.errors import ChatIRError

        settings = get_settings()
        if http and settings.slack_signing_secret is None:
            raise ChatIRError("HTTP mode needs SLACK_SIGNING_SECRET (Basic Information > App Credentials).")
        bolt_app = create_slack_app(settings)
        if http:
            serve_http(bolt_app, settings, host, port)
        else:
            serve_socket_mode(bolt_app, settings)

    @app.command("slack-backfill")
    def slack_backfill(channel: str = typer.Argument(..., help="Channel id, e.g. C0123456789.")) -> None:
        """Index every image in a channel's history (admin; the bot must be in the channel)."""
        from chatir.settings import get_settings
        from frontends.slack.app import web_client
        from frontends.slack.indexing import SlackIndexer
        from tools.client import RetrieverClient

        settings = get_settings()
        client = web_client(settings)
        indexer = SlackIndexer(client, RetrieverClient.from_settings(settings), client.token or "")
        sent = indexer.backfill(channel)
        typer.echo(f"sent {sent} image(s) from {channel} to the index")
