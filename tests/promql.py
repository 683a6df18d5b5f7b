"""What the code exports to Prometheus, and the metric names a PromQL expression uses: shared by
the static checks of the alerting rules and the Grafana dashboard."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from inference.gateway import GatewayMetrics
from inference.metrics import LlmMetrics
from jobs.judge import JudgeMetrics
from streams.metrics import StreamsMetrics

# Functions, aggregations, keywords and Prometheus' own series: not metrics of ours.
PROMQL_WORDS = {
    "sum",
    "rate",
    "irate",
    "increase",
    "by",
    "without",
    "histogram_quantile",
    "clamp_min",
    "up",
    "avg",
    "max",
    "min",
    "topk",
    "count",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "bool",
    "time",
}


def exported() -> set[str]:
    """Every series name the services expose (labelled metrics have no samples until used, so
    counter and histogram names are derived)."""
    names: set[str] = set()
    for make in (LlmMetrics, GatewayMetrics, StreamsMetrics, JudgeMetrics):
        registry = CollectorRegistry()
        make(registry=registry)
        for metric in registry.collect():
            names.add(metric.name)
            names.update(sample.name for sample in metric.samples)
            if metric.type == "counter":
                names.add(metric.name + "_total")
            if metric.type == "histogram":
                names.update(metric.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in ``expr``: label selectors, grouping clauses, ranges, Grafana variables,
    strings and numbers removed first (1e-9 is not a metric, nor is `by (intent)`)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+|\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\b\d+(\.\d+)?(e-?\d+)?\b", "", expr)
    return set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", expr)) - PROMQL_WORDS
