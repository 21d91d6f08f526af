"""The Slack front-end: a slack-bolt app (Socket Mode or HTTP) over the conversation engine."""
