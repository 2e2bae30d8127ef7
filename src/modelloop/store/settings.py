from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    """Where the registry and the database live. Every component's settings extend this."""

    model_config = SettingsConfigDict(env_prefix="MODELLOOP_", extra="ignore")

    home: Path = Field(default=Path("var"), description="data directory")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite file <home>/modelloop.db"
    )
    registry: Path | None = Field(default=None, description="default <home>/registry")

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'modelloop.db').resolve()}"

    @property
    def registry_dir(self) -> Path:
        return self.registry if self.registry is not None else self.home / "registry"
