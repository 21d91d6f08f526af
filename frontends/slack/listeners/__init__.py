"""Bolt listeners, one module per concern. Each ``register(app, deps)`` acks at once and does the work in a
lazy listener, so Slack always gets its answer within 3 seconds."""

from __future__ import annotations

from slack_bolt import App

from frontends.slack.listeners import actions, assistant, commands, files, mentions, messages
from frontends.slack.listeners.deps import SlackDeps


def register_all(app: App, deps: SlackDeps) -> None:
    for module in (assistant, mentions, messages, actions, commands, files):
        module.register(app, deps)
