"""Prometheus metrics of one worker process, on a registry of its own (no module state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.webhooks = Counter(
            "zapbase_webhooks", "Webhook POSTs by outcome (ingested, bad_signature, quarantined, error...).",
            ["outcome"], registry=r)
        self.hotmart_webhooks = Counter(
            "zapbase_hotmart_webhooks",
            "Hotmart webhook POSTs by outcome (applied, stored, duplicate, failed, quarantined...).",
            ["outcome"], registry=r)
        self.webhook_latency = Histogram(
            "zapbase_webhook_seconds", "Time to answer a webhook POST (Meta: median <= 250 ms, <1% > 1 s).",
            registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.ingested_messages = Counter(
            "zapbase_ingested_messages", "New inbound messages stored by whatsapp_ingest.", registry=r)
        self.duplicates = Counter(
            "zapbase_ingest_duplicates", "Redelivered webhook changes and known wamids skipped.", registry=r)
        self.quarantined = Counter(
            "zapbase_ingest_quarantined", "Malformed webhook items and bodies kept aside.", registry=r)
        self.statuses = Counter(
            "zapbase_ingested_statuses", "Status webhooks applied to outbound messages.", registry=r)
        self.queue_depth = Gauge(
            "zapbase_queue_depth",
            "Messages waiting per queue (inbound to process, outbound to send, webhook bodies backlogged).",
            ["queue"], registry=r)
        self.send_latency = Histogram(
            "zapbase_send_latency_seconds", "Graph API send call latency.", registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.sent = Counter("zapbase_sent_messages", "Messages accepted by the Graph API.", registry=r)
        self.send_failures = Counter(
            "zapbase_send_failures", "Failed sends by Meta error code and whether they will be retried.",
            ["code", "retryable"], registry=r)
        self.processed = Counter(
            "zapbase_processed_messages", "Inbound messages processed, by conversation mode and outcome.",
            ["mode", "outcome"], registry=r)
