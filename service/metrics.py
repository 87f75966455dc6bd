"""Prometheus metrics of one app instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from models.compiled import TreeEngine

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServiceMetrics:
    """Latency per route, model version, suggestions served, fallback answers, in-flight and shed requests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "polku_http_request_duration_seconds",
            "Request latency per route template",
            ["method", "route", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.model_version = Gauge(
            "polku_model_version",
            "Registry version of the model in service (0 = fallback or unversioned)",
            ["name", "alias", "source"],
            registry=self.registry,
        )
        self.model_fallback = Gauge(
            "polku_model_fallback", "1 when the points fallback is serving", registry=self.registry
        )
        self.trees_compiled = Gauge(
            "polku_model_trees_compiled",
            "1 when the model's compiled trees score, 0 when LightGBM's booster does (or the model has no trees)",
            registry=self.registry,
        )
        self.trees_fallback = Gauge(
            "polku_model_trees_fallback",
            "1 when the model shipped compiled trees that cannot be used here (platform mismatch, missing or corrupt "
            "library), so LightGBM's booster scores",
            registry=self.registry,
        )
        self.suggestions = Counter(
            "polku_suggestions_served", "Suggestion responses served", ["kind"], registry=self.registry
        )
        self.candidates = Counter("polku_candidates_served", "Candidate rankings served", registry=self.registry)
        self.fallback_answers = Counter(
            "polku_fallback_answers", "Ranking answers served by the fallback model", registry=self.registry
        )
        self.feedback = Counter("polku_feedback_events", "Feedback events", ["status"], registry=self.registry)
        self.reloads = Counter("polku_model_reloads", "Model reload attempts", ["result"], registry=self.registry)
        self.shed = Counter(
            "polku_requests_shed",
            "Requests answered 503 at once because the worker was at its in-flight limit",
            ["route"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "polku_requests_in_flight", "Requests admitted and not yet answered", registry=self.registry
        )
        self.in_flight_limit = Gauge(
            "polku_requests_in_flight_limit",
            "In-flight limit of this worker (feedback excluded)",
            registry=self.registry,
        )

    def set_model(
        self,
        name: str,
        alias: str | None,
        version: str | None,
        source: str,
        fallback: bool,
        trees: TreeEngine | None = None,
    ) -> None:
        """Expose the model in service (``trees``: which code computes its trees, see ``PolkuModel.trees``)."""
        self.model_version.clear()
        numeric = float(version) if version is not None and version.isdigit() else 0.0
        self.model_version.labels(name=name, alias=alias or "", source=source).set(numeric)
        self.model_fallback.set(1.0 if fallback else 0.0)
        self.trees_compiled.set(1.0 if trees is not None and trees.compiled else 0.0)
        self.trees_fallback.set(1.0 if trees is not None and trees.fallback else 0.0)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
