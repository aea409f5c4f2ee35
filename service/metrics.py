"""Every Prometheus metric of the guardit server (SPEC.md "Metrics"), on one dedicated registry.

Module-level objects so the engine and the routes can import them by name. Labels stay
low-cardinality: route templates, status codes, gate results, forget-set statuses, kernel op names.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from service.db_models import STATUSES

#: The registry ``GET /metrics`` exposes (not prometheus-client's global one).
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("guardit_requests_total", "HTTP requests by route template and status code",
                   ["route", "code"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("guardit_request_seconds", "HTTP request latency (to the last byte) by route",
                            ["route"], registry=REGISTRY,
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                                     300))
GENERATED_TOKENS = Counter("guardit_generated_tokens", "Tokens generated (both arms of compare)",
                           registry=REGISTRY)
GATE_DECISIONS = Counter("guardit_gate_decisions", "Gate decisions per request: open (steered) or closed",
                         ["result"], registry=REGISTRY)
ABSTENTIONS = Counter("guardit_abstentions", "Answers replaced by the neutral answer, by reason (leak, "
                      "leak_after_escalation, degenerate, closed_question)", ["reason"], registry=REGISTRY)
FORGET_SETS = Gauge("guardit_forget_sets", "Forget sets in the registry by status (refreshed on scrape)",
                    ["status"], registry=REGISTRY)
BUILD_SECONDS = Histogram("guardit_forget_set_build_seconds", "Wall time of forget-set builds",
                          registry=REGISTRY, buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800))
BATCH_SIZE = Histogram("guardit_batch_size", "Rows per forward pass", registry=REGISTRY,
                       buckets=(1, 2, 4, 8, 16, 32, 64))
QUEUE_DEPTH = Gauge("guardit_queue_depth", "Requests waiting for a batch slot", registry=REGISTRY)
KERNEL_FALLBACKS = Counter("guardit_kernel_fallback", "Unexpected fallbacks from a fused kernel to the "
                           "PyTorch reference (CUDA tensors Triton could not take), by op; the CPU path "
                           "is not one",
                           ["op"], registry=REGISTRY)

#: Requests to these paths are not instrumented (probes and the scrape itself).
UNINSTRUMENTED = frozenset({"/metrics", "/healthz", "/readyz"})


def observe_request(route: str, status: int, seconds: float) -> None:
    """Count one finished HTTP request under its route template."""
    REQUESTS.labels(route=route, code=str(status)).inc()
    REQUEST_SECONDS.labels(route=route).observe(seconds)


def count_kernel_fallback(op: str, reason: str) -> None:
    """``kernels.dispatch`` fallback listener: bump ``guardit_kernel_fallback_total{op}``."""
    del reason  # logged once by kernels.dispatch; not a label (unbounded text)
    KERNEL_FALLBACKS.labels(op=op).inc()


def attach_kernel_fallbacks() -> None:
    """Route unexpected kernel fallbacks into ``guardit_kernel_fallback_total``: a CPU deployment runs the
    reference by design and would otherwise count every steered forward pass (an alert that always fires)."""
    from kernels.dispatch import set_fallback_listener

    set_fallback_listener(count_kernel_fallback, include_expected=False)


def refresh_forget_sets(statuses: list[str]) -> None:
    """Set ``guardit_forget_sets{status}`` from the current statuses of every set (0 for absent ones)."""
    counts = Tally(statuses)
    for status in STATUSES:
        FORGET_SETS.labels(status=status).set(counts.get(status, 0))


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
