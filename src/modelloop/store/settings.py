from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    """Where the registry and the database live. Every component's settings extend this."""

    # Errors name the variable, never its value: values include the admin token and
    # database URLs with passwords.
    model_config = SettingsConfigDict(
        env_prefix="MODELLOOP_", extra="ignore", hide_input_in_errors=True
    )

    home: Path = Field(default=Path("var"), description="data directory")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite file <home>/modelloop.db"
    )
    registry: str | Path | None = Field(
        default=None,
        description="a folder, or s3://BUCKET/PREFIX (credentials, region and endpoint from "
        "the standard AWS_* variables); default <home>/registry",
    )

    # Retention is read by the monitor and, with MODELLOOP_SERVICE_RETENTION, by the service.
    retention_days: float = Field(
        default=30.0,
        ge=0,
        description="logged predictions, their feedback and drift reports older than this "
        "are deleted; 0 keeps them forever",
    )
    retention_rows: int = Field(
        default=0,
        ge=0,
        description="the prediction log keeps at most this many rows, oldest deleted first; "
        "0 means no row bound",
    )
    retention_interval: float = Field(
        default=60.0, gt=0, description="seconds between retention passes"
    )

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'modelloop.db').resolve()}"

    @property
    def registry_location(self) -> str | Path:
        """`s3://…` as given, else the folder."""
        if self.registry is None:
            return self.home / "registry"
        if isinstance(self.registry, str) and self.registry.startswith("s3://"):
            return self.registry
        return Path(self.registry)
