from typing import Literal

from pydantic import Field

from modelloop.store.settings import StoreSettings


class MonitorSettings(StoreSettings):
    """`MODELLOOP_MONITOR_*` (and the shared store) settings of the monitor worker."""

    monitor_host: str = Field(default="127.0.0.1", description="address of /metrics")
    monitor_port: int = Field(default=8001, ge=0, le=65535, description="/metrics port")
    monitor_interval: float = Field(default=5.0, gt=0, description="seconds between passes")
    window_rows: int = Field(default=1000, gt=0, description="rows that close a window")
    window_seconds: float = Field(
        default=300.0, gt=0, description="age that closes a window holding at least min_window_rows"
    )
    min_window_rows: int = Field(default=500, gt=0, description="smaller windows are not judged")
    merge_windows: int = Field(
        default=2,
        ge=1,
        description="the last windows are also judged merged, for power at small window sizes",
    )
    drift_multiplier: float = Field(
        default=2.0,
        gt=0,
        description="threshold = max(floor, multiplier x sampling noise at the window's size)",
    )
    persistence: int = Field(
        default=2,
        ge=1,
        description="flagged windows in a row that make drift (and estimated drops in a row "
        "that ask for a retrain)",
    )
    performance_margin: float = Field(
        default=0.05,
        ge=0,
        description="retrain when live performance is this much below the version's test "
        "metric (the estimated performance: this much and beyond its noise)",
    )
    min_labels: int = Field(
        default=200, gt=0, description="labelled predictions needed to judge live performance"
    )
    estimate_multiplier: float = Field(
        default=3.0,
        gt=0,
        description="an estimated (label-free) drop of the primary metric counts when larger "
        "than max(performance_margin, this many standard errors at the window's size)",
    )
    drift_retrain: Literal["always", "unless_benign"] = Field(
        default="always",
        description="always: persisting drift asks for a retrain; unless_benign: not while the "
        "estimated performance holds (benign drift)",
    )
    live_rows: int = Field(
        default=1000,
        gt=0,
        description="latest labelled predictions that live metrics are computed on",
    )
    cooldown_seconds: float = Field(
        default=600.0, ge=0, description="no new trigger this long after a retrain ended"
    )
    settle_seconds: float = Field(
        default=1.0,
        ge=0,
        description="rows younger than this are "
        "read on a later pass (commits may land out of order)",
    )
    # 5,000 rather than 20,000: a chunk's rows and decoded documents are the monitor's peak
    # memory, and the allocators keep that peak. Soak-like traffic (4,000 rows/s, 8 features),
    # RSS at 60 s -> 300 s: 108 -> 123 MiB with 20,000, 92 -> 94 MiB with 5,000 (pymalloc
    # arenas 61 -> 38 MiB). Ingestion (bench/monitor_bench.py, 200k rows, warm): SQLite
    # 84k -> 87k rows/s, PostgreSQL 79k -> 74k rows/s (one more round trip per 5,000 rows).
    chunk_rows: int = Field(default=5_000, gt=0, description="log rows read per query")
    report_seconds: float = Field(
        default=10.0, ge=0, description="least time between rewrites of the HTML report page"
    )
