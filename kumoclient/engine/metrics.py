"""Prometheus metrics of one Engine, served as text at `GET /metrics`.

Every Engine has its own `CollectorRegistry` (never prometheus_client's global one), so that
several engines in one process (tests, library users) count separately and never clash over
metric names.

| name | type | labels | counts |
| --- | --- | --- | --- |
| `kumoclient_messages_received_total` | counter | queue | new messages (not the start-up scan) |
| `kumoclient_deliveries_total` | counter | queue, site | Delivery records |
| `kumoclient_transient_failures_total` | counter | queue, site | TransientFailure records |
| `kumoclient_bounces_total` | counter | queue, site | Bounce records |
| `kumoclient_expirations_total` | counter | queue, site | Expiration records |
| `kumoclient_admin_bounces_total` | counter | queue | AdminBounce records |
| `kumoclient_rewrite_hook_calls_total` | counter | queue | rewrite handler calls |
| `kumoclient_rewrites_total` | counter | queue | calls that changed the code |
| `kumoclient_rewrite_hook_seconds` | histogram | — | time spent in the hook |
| `kumoclient_spooled_messages` | gauge | — | messages in the spool |
| `kumoclient_connections_open` | gauge | site | SMTP sessions open (idle ones too) |
| `kumoclient_log_unavailable` | gauge | — | 1 while delivery log records cannot be written |
| `kumoclient_log_records_held` | gauge | — | records waiting in memory for the log |
| `kumoclient_log_records_dropped` | gauge | — | records not kept (hold limit) since start |

`site` is the record's `site` (KumoMTA's ready-queue name); it is empty for dispositions
decided before a site was known (DNS failures, policy errors, expiry while scheduled).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from kumoclient.logs import RecordLog
from kumoclient.records import RecordType

# Lua handlers usually take microseconds; SPEC 4.1 warns from 100 ms on
HOOK_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class EngineMetrics:
    """The metrics of one engine, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        by_queue = ["queue"]
        by_site = ["queue", "site"]
        self.received = Counter(
            "kumoclient_messages_received",
            "Messages newly spooled (one per recipient), by queue.",
            by_queue,
            registry=registry,
        )
        self.deliveries = Counter(
            "kumoclient_deliveries",
            "Delivery records, by queue and site.",
            by_site,
            registry=registry,
        )
        self.transient_failures = Counter(
            "kumoclient_transient_failures",
            "TransientFailure records, by queue and site.",
            by_site,
            registry=registry,
        )
        self.bounces = Counter(
            "kumoclient_bounces",
            "Bounce records, by queue and site.",
            by_site,
            registry=registry,
        )
        self.expirations = Counter(
            "kumoclient_expirations",
            "Expiration records, by queue and site.",
            by_site,
            registry=registry,
        )
        self.admin_bounces = Counter(
            "kumoclient_admin_bounces",
            "AdminBounce records, by queue.",
            by_queue,
            registry=registry,
        )
        self.hook_calls = Counter(
            "kumoclient_rewrite_hook_calls",
            "Calls of the smtp_client_rewrite_delivery_status handler, by queue.",
            by_queue,
            registry=registry,
        )
        self.rewrites = Counter(
            "kumoclient_rewrites",
            "Replies whose code smtp_client_rewrite_delivery_status changed, by queue.",
            by_queue,
            registry=registry,
        )
        self.hook_seconds = Histogram(
            "kumoclient_rewrite_hook_seconds",
            "Time spent in smtp_client_rewrite_delivery_status, in seconds.",
            buckets=HOOK_BUCKETS,
            registry=registry,
        )
        self.spooled = Gauge(
            "kumoclient_spooled_messages",
            "Messages in the spool.",
            registry=registry,
        )
        self.connections = Gauge(
            "kumoclient_connections_open",
            "Open SMTP client sessions (connected or idle), by site.",
            ["site"],
            registry=registry,
        )
        self.log_unavailable = Gauge(
            "kumoclient_log_unavailable",
            "1 while delivery log records cannot be written (deliveries paused, reception "
            "refused), else 0.",
            registry=registry,
        )
        self.log_held = Gauge(
            "kumoclient_log_records_held",
            "Delivery log records waiting in memory to be written.",
            registry=registry,
        )
        self.log_dropped = Gauge(
            "kumoclient_log_records_dropped",
            "Delivery log records not kept since start: the log was down and its hold limit "
            "reached.",
            registry=registry,
        )
        self._by_type = {
            "Delivery": self.deliveries,
            "TransientFailure": self.transient_failures,
            "Bounce": self.bounces,
            "Expiration": self.expirations,
        }

    def watch_log(self, records: RecordLog) -> None:
        """Read the delivery log's health, held and dropped records at each scrape."""
        self.log_unavailable.set_function(lambda: 0.0 if records.health.ok else 1.0)
        self.log_held.set_function(lambda: float(records.held))
        self.log_dropped.set_function(lambda: float(records.dropped))

    def received_message(self, queue: str) -> None:
        """A newly received message was spooled."""
        self.received.labels(queue=queue).inc()
        self.spooled.inc()

    def left_spool(self) -> None:
        """A message left the spool (final disposition, or quarantined)."""
        self.spooled.dec()

    def count(self, kind: RecordType, queue: str, site: str) -> None:
        """Count a disposition by its record type (Reception is counted by received_message)."""
        if kind is RecordType.ADMIN_BOUNCE:
            self.admin_bounces.labels(queue=queue).inc()
            return
        counter = self._by_type.get(kind.value)
        if counter is not None:
            counter.labels(queue=queue, site=site).inc()

    def hook(self, queue: str, seconds: float, rewritten: bool) -> None:
        """One call of the rewrite hook."""
        self.hook_calls.labels(queue=queue).inc()
        self.hook_seconds.observe(seconds)
        if rewritten:
            self.rewrites.labels(queue=queue).inc()

    def connection_opened(self, site: str) -> None:
        """A session to `site` was opened."""
        self.connections.labels(site=site).inc()

    def connection_closed(self, site: str) -> None:
        """A session to `site` was closed or aborted."""
        self.connections.labels(site=site).dec()

    def text(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
