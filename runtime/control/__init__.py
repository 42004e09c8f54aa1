"""The control service and the event bus: what the REST API, the Telegram bot and the dashboard call."""
