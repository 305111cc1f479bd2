"""The worker process: HTTP webhooks, the inbound processor, the outbound sender."""
