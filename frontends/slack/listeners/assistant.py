"""The assistant side panel through bolt's ``Assistant`` middleware: ``assistant_thread_started``,
``assistant_thread_context_changed`` and the person's messages in the panel's threads (``message.im`` with
a ``thread_ts``). Registered only when the app has a :class:`SlackAssistant` (always, in the product).

Bolt routes every DM message with a ``thread_ts`` here, also in workspaces without the panel: those threads
are unknown to the thread store, and :meth:`SlackAssistant.message` hands them to the ordinary DM flow."""

from __future__ import annotations

from slack_bolt import App, Assistant

from frontends.slack.conversation import Place
from frontends.slack.listeners.deps import SlackDeps, just_ack


def register(app: App, deps: SlackDeps) -> None:
    assistant_deps = deps.assistant
    if assistant_deps is None:
        return
    assistant = Assistant(thread_context_store=assistant_deps.threads)

    def thread_started(event: dict, say, set_suggested_prompts) -> None:
        thread = event["assistant_thread"]
        assistant_deps.thread_started(
            channel=thread["channel_id"],
            thread_ts=thread["thread_ts"],
            user_id=thread.get("user_id", ""),
            context=thread.get("context"),
            say=say,
            set_suggested_prompts=set_suggested_prompts,
        )

    def context_changed(event: dict) -> None:  # quick (a row written): acked by bolt, run in its thread
        thread = event["assistant_thread"]
        assistant_deps.context_changed(
            channel=thread["channel_id"],
            thread_ts=thread["thread_ts"],
            user_id=thread.get("user_id", ""),
            context=thread.get("context") or {},
        )

    def user_message(event: dict, body: dict, client, set_status, set_title) -> None:
        text = (event.get("text") or "").strip()
        if not text:
            return
        place = Place(team=body.get("team_id", ""), channel=event["channel"], thread_ts=event["thread_ts"])
        assistant_deps.message(
            client,
            place,
            user_id=event.get("user", ""),
            text=text,
            set_status=set_status,
            set_title=set_title,
        )

    assistant.thread_started(lazy=[thread_started])(just_ack)
    assistant.thread_context_changed(context_changed)
    assistant.user_message(lazy=[user_message])(just_ack)
    app.assistant(assistant)
