"""The API channel: business systems post customer messages in, and receive ours as signed webhooks."""
