"""HTTP surface: webhooks, the agent API, the chat socket, health and metrics."""
