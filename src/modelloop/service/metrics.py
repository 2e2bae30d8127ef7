"""The service's Prometheus metrics, on a registry passed in (no global state)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
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
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Where the prediction log writer failed: a commit, a spool write, a spool replay, setting bad
# rows aside, or anything else (a bug, caught so that the writer goes on).
WRITER_STAGES = ("database", "spool", "replay", "quarantine", "internal")


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "modelloop_requests",
            "requests answered, HTTP and gRPC (code: the HTTP status, or its equivalent for gRPC)",
            ["model", "version", "endpoint", "code"],
            registry=registry,
        )
        self.predictions = Counter(
            "modelloop_predictions",
            "rows predicted",
            ["model", "version"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "modelloop_request_duration_seconds",
            "time from request to response",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "modelloop_inference_duration_seconds",
            "time of one ONNX Runtime call",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retention_deleted = Counter(
            "modelloop_retention_deleted_rows",
            "rows deleted by the service's retention passes (MODELLOOP_SERVICE_RETENTION)",
            ["table"],
            registry=registry,
        )
        for table in ("predictions", "feedback", "drift_reports"):
            self.retention_deleted.labels(table)
        self.retention_errors = Counter(
            "modelloop_retention_errors",
            "the service's retention passes that failed (the database away, say)",
            registry=registry,
        )
        self.batch_rows = Histogram(
            "modelloop_batch_rows",
            "rows in one ONNX Runtime call",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.active_version = Gauge(
            "modelloop_model_active_version",
            "version currently serving",
            ["model"],
            registry=registry,
        )
        self.model_info = Gauge(
            "modelloop_model_info",
            "1 for each loaded version",
            ["model", "version", "role"],
            registry=registry,
        )
        self.swaps = Counter(
            "modelloop_model_swaps",
            "active versions swapped in",
            ["model"],
            registry=registry,
        )
        self.registry_errors = Counter(
            "modelloop_registry_errors_total",
            "Registry operations that failed because the store was unreachable or refused us",
            ["operation"],
            registry=registry,
        )
        self.load_failures = Counter(
            "modelloop_model_load_failures",
            "versions that failed to load or smoke-test",
            ["model"],
            registry=registry,
        )
        self.log_queue_rows = Gauge(
            "modelloop_log_queue_rows",
            "prediction log rows waiting to be written",
            registry=registry,
        )
        self.log_rows_written = Counter(
            "modelloop_log_rows_written",
            "prediction log rows committed",
            registry=registry,
        )
        self.log_rows_spooled = Counter(
            "modelloop_log_rows_spooled",
            "prediction log rows the database refused, kept on local disk",
            registry=registry,
        )
        self.log_rows_replayed = Counter(
            "modelloop_log_rows_replayed",
            "spooled prediction log rows written back to the database",
            registry=registry,
        )
        self.log_write_errors = Counter(
            "modelloop_log_write_errors",
            "failed prediction log commits (retried)",
            registry=registry,
        )
        self.log_queue_bytes = Gauge(
            "modelloop_log_queue_bytes",
            "estimated memory held by prediction log rows not yet written (or spooled)",
            registry=registry,
        )
        self.log_writer_errors = Counter(
            "modelloop_log_writer_errors",
            "failures in the prediction log writer by stage; the rows are kept and retried",
            ["stage"],
            registry=registry,
        )
        for stage in WRITER_STAGES:
            self.log_writer_errors.labels(stage)
        self.log_writer_healthy = Gauge(
            "modelloop_log_writer_healthy",
            "1 while the prediction log writer makes progress (into the database or the "
            "spool), 0 when neither takes rows",
            registry=registry,
        )
        self.log_writer_healthy.set(1)
        self.log_rows_quarantined = Counter(
            "modelloop_log_rows_quarantined",
            "prediction log rows the database refused (or spool lines that could not be "
            "read), set aside in the spool's quarantine folder",
            registry=registry,
        )
        self.log_wait_seconds = Counter(
            "modelloop_log_backpressure_seconds",
            "time requests waited for room in the log queue",
            registry=registry,
        )
        self.feedback_rows = Counter(
            "modelloop_feedback_rows",
            "feedback labels",
            ["result"],
            registry=registry,
        )
