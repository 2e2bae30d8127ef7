from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from modelloop.store.settings import StoreSettings

# Characters in a configured admin or feedback token, at least (`modelloop up` makes 43).
MIN_TOKEN = 16


class ServiceSettings(StoreSettings):
    """`MODELLOOP_*` settings of the HTTP service."""

    # A settings error names the field and what is wrong, never the value given (a token):
    # StoreSettings' model_config hides inputs in errors for every component.

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port")
    grpc_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="Open Inference Protocol gRPC port (inference.GRPCInferenceService), on the "
        "same host as HTTP; 0: gRPC off",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="bearer token for `/v1/admin/*` (and the full `GET /v1/models/{m}`), at "
        f"least {MIN_TOKEN} characters, surrounding whitespace (a Secret's trailing "
        "newline) ignored; unset, empty or `off`: admin API off",
    )

    @field_validator("admin_token", mode="before")
    @classmethod
    def _admin_token(cls, value: Any) -> Any:
        """Stripped as the presented token is; `off` (as `modelloop up` passes it) and an
        empty value both mean admin off; a shorter token is refused without echoing it."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        value = value.strip()
        if value.lower() in ("", "off"):
            return None
        if len(value) < MIN_TOKEN:
            # PydanticCustomError, not ValueError: the error must not carry the input.
            raise PydanticCustomError(
                "admin_token_short",
                "MODELLOOP_ADMIN_TOKEN must be at least {minimum} characters "
                "(got {length}); unset it or set it to 'off' to turn admin off",
                {"minimum": MIN_TOKEN, "length": len(value)},
            )
        return value

    service_retention: bool = Field(
        default=True,
        description="apply the retention settings here too, in a background thread every "
        "retention_interval, so that a deployment running only `modelloop serve` does not "
        "keep its log forever; where the monitor runs (it applies them itself) set false, as "
        "`modelloop up` and the k8s manifests do",
    )
    feedback_token: SecretStr | None = Field(
        default=None,
        description="bearer token that POST /v1/feedback requires (`Authorization: Bearer "
        f"<token>`), at least {MIN_TOKEN} characters, surrounding whitespace ignored (a "
        "Secret file's trailing newline); unset: feedback open to anyone who can reach the "
        "service",
    )

    @field_validator("feedback_token", mode="before")
    @classmethod
    def _feedback_token(cls, value: Any) -> Any:
        """Stripped (a file's trailing newline must match), and long enough to be a secret;
        a value that is set but empty is refused, not taken to mean open."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            if len(value) < MIN_TOKEN:
                raise ValueError(
                    f"MODELLOOP_FEEDBACK_TOKEN must be at least {MIN_TOKEN} characters "
                    "(surrounding whitespace ignored); unset it to leave feedback open"
                )
        return value

    poll_interval: float = Field(
        default=1.0,
        gt=0,
        description="seconds between checks of the registry's active pointers (a bucket's "
        "list of models is read every 15 s)",
    )
    max_body_bytes: int = Field(default=1 << 20, gt=0, description="larger bodies get 413")
    max_connections: int = Field(
        default=1000,
        gt=0,
        description="open connections served at once; a connection opened beyond them gets 503 "
        "(keep it under the process's open-file limit)",
    )
    body_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="longest a request may take to arrive, headers and body, from its first "
        "byte (or the connection's opening); slower ones get 408 and the connection is closed",
    )
    max_instances: int = Field(default=1000, gt=0, description="more rows in one request get 413")
    batching: bool = Field(
        default=True, description="merge concurrent requests' rows into one ONNX call"
    )
    max_batch_rows: int = Field(default=256, gt=0, description="rows merged into one ONNX call")
    max_batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="extra wait to fill a batch; "
        "0: merge only what is already waiting (no added latency)",
    )
    inline_rows: int = Field(
        default=1000,
        gt=0,
        description="ONNX calls up to this many rows run on the event loop, larger ones in a "
        "worker thread; measured: a thread hop per 256-row call cost ~10 % throughput and "
        "doubled p99, so by default every call up to the instance limit runs inline",
    )
    durable: bool = Field(
        default=False,
        description="answer a prediction only once its log row is committed (or spooled to "
        "disk): nothing acknowledged is lost even to SIGKILL, at the cost of the writer's "
        "commit latency; a row not written within log_wait_seconds answers 503",
    )
    log_queue_rows: int = Field(
        default=100_000,
        gt=0,
        description="rows waiting to be written before requests wait for the writer (backpressure)",
    )
    log_queue_bytes: int = Field(
        default=64 << 20,
        gt=0,
        description="estimated memory of the rows waiting to be written before requests wait "
        "for the writer; a row counts 512 bytes plus 6 times its share of the request body "
        "(measured: a parsed row takes 6-8 times its JSON)",
    )
    log_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        description="longest a request waits for room in the log queue, or (durable mode, "
        "feedback) for its rows to be written, before it gets 503 with Retry-After; when "
        "neither the database nor the spool takes rows, a full queue answers 503 at once",
    )
    log_drain_seconds: float = Field(
        default=20.0,
        gt=0,
        description="on SIGTERM, how long the writer keeps retrying the database and the spool "
        "for the rows it still holds before it gives up on them (and logs how many are lost)",
    )
    log_batch_rows: int = Field(
        default=250,
        gt=0,
        description="rows per commit; small commits keep the writer from holding the GIL for long",
    )
    log_flush_seconds: float = Field(
        default=0.2, gt=0, description="longest a logged row waits before its commit"
    )
    loaded_versions: int = Field(default=4, gt=0, description="non-active versions kept loaded")
    onnx_threads: int = Field(default=1, gt=0, description="ONNX Runtime intra-op threads")
