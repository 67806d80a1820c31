"""Prometheus metrics of the shared machinery, one definition each.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR makes every worker write to shared files and
`/metrics` aggregate them (see shared.web).
"""

from prometheus_client import Counter, Gauge, Histogram

REQUEST_LATENCY = Histogram(
    "nocontact_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "endpoint", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RELAY_PUBLISHED = Counter("nocontact_relay_published_total", "Events published by the relay", ["relay"])
RELAY_ERRORS = Counter("nocontact_relay_errors_total", "Relay failures (broker or database)", ["relay"])
RELAY_LAG = Gauge(
    "nocontact_relay_lag_events", "Events in the store not yet published", ["relay"], multiprocess_mode="max"
)
CONSUMED = Counter(
    "nocontact_consumer_messages_total", "Messages handled by consumers", ["component", "outcome"]
)
CONSUMER_LAG = Gauge(
    "nocontact_consumer_lag_seconds",
    "Age of the last message handled (recorded_at to handled)",
    ["component"],
    multiprocess_mode="max",
)
DEAD_LETTERS = Counter("nocontact_dead_letters_total", "Messages sent to a dead-letter queue", ["component"])
WEBHOOK_ATTEMPTS = Counter(
    "nocontact_webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"]
)
SCHEDULER_FAILURES = Counter(
    "nocontact_scheduler_failures_total",
    "Items a scheduler could not process (skipped, logged, tried again later)",
    ["scheduler"],
)
