"""The monitor's Prometheus metrics, on a registry passed in."""

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelloop.monitoring.rules import STATES


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.drift_score = Gauge(
            "modelloop_drift_score",
            "a feature's drift statistic on the last window",
            ["model", "feature", "statistic"],
            registry=registry,
        )
        self.drift_threshold = Gauge(
            "modelloop_drift_threshold",
            "the threshold that statistic is judged against",
            ["model", "feature", "statistic"],
            registry=registry,
        )
        self.feature_drifted = Gauge(
            "modelloop_drift_feature_flagged",
            "1 if the feature drifted on the last check",
            ["model", "feature"],
            registry=registry,
        )
        self.drift_detected = Gauge(
            "modelloop_drift_detected",
            "1 if the last check found drift",
            ["model"],
            registry=registry,
        )
        self.window_rows = Gauge(
            "modelloop_drift_window_rows",
            "rows in the last judged window",
            ["model"],
            registry=registry,
        )
        self.pending_rows = Gauge(
            "modelloop_drift_pending_rows",
            "rows in the window being filled",
            ["model"],
            registry=registry,
        )
        self.state = Gauge(
            "modelloop_monitor_state",
            "1 for the model's current state",
            ["model", "state"],
            registry=registry,
        )
        self.live = Gauge(
            "modelloop_live_metric",
            "live metric from feedback",
            ["model", "version", "metric"],
            registry=registry,
        )
        self.estimated = Gauge(
            "modelloop_estimated_metric",
            "metric estimated without labels on the last window (CBPE, DLE)",
            ["model", "version", "metric"],
            registry=registry,
        )
        self.estimated_stderr = Gauge(
            "modelloop_estimated_metric_stderr",
            "standard error of the estimated metric at the last window's size",
            ["model", "version", "metric"],
            registry=registry,
        )
        self.baseline = Gauge(
            "modelloop_baseline_metric",
            "the version's metric on its test split",
            ["model", "version", "metric"],
            registry=registry,
        )
        self.live_labels = Gauge(
            "modelloop_live_labels",
            "labelled predictions behind the live metrics",
            ["model", "version"],
            registry=registry,
        )
        self.last_check = Gauge(
            "modelloop_monitor_last_check_timestamp_seconds",
            "when the monitor last checked",
            ["model"],
            registry=registry,
        )
        self.rows_ingested = Counter(
            "modelloop_monitor_rows_ingested",
            "log rows read by the monitor",
            ["model"],
            registry=registry,
        )
        self.checks = Counter(
            "modelloop_drift_checks",
            "windows judged",
            ["model", "verdict"],
            registry=registry,
        )
        self.triggers = Counter(
            "modelloop_retrain_triggers",
            "retrains asked for",
            ["model", "reason"],
            registry=registry,
        )
        self.errors = Counter(
            "modelloop_monitor_errors",
            "monitor passes that failed",
            registry=registry,
        )
        self.pruned = Counter(
            "modelloop_retention_deleted_rows",
            "rows deleted by the retention setting",
            ["table"],
            registry=registry,
        )
        for table in ("predictions", "feedback", "drift_reports"):
            self.pruned.labels(table)
        self.active_version = Gauge(
            "modelloop_monitor_version",
            "version the monitor judges traffic against",
            ["model"],
            registry=registry,
        )

    def set_state(self, model: str, state: str) -> None:
        for s in STATES:
            self.state.labels(model, s).set(1.0 if s == state else 0.0)
