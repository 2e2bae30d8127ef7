"""The audit log: promotions, rollbacks, triggers, admin actions, with their numbers."""

import time
from typing import Any

from sqlalchemy import insert, select

from modelloop.store.database import Database
from modelloop.store.schema import events


class Events:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, model: str, kind: str, actor: str, details: dict[str, Any]) -> int:
        with self.db.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(events)
                    .values(ts=time.time(), model=model, kind=kind, actor=actor, details=details)
                    .returning(events.c.id)
                ).scalar_one()
            )

    def list(
        self, model: str | None = None, kind: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        q = select(events).order_by(events.c.id.desc()).limit(limit)
        if model is not None:
            q = q.where(events.c.model == model)
        if kind is not None:
            q = q.where(events.c.kind == kind)
        with self.db.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]
