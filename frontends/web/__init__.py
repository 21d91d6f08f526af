"""The web chat: the Slack experience in a browser, served by the project (no CDN, works offline)."""
