"""Retention bounds the prediction log by age and by rows, on SQLite and PostgreSQL: the oldest
records go first, whole, their feedback and caller ids with them; newer rows and their labels
stay untouched."""

import time

from sqlalchemy import func, select

from log_helpers import logged_ids
from modelloop.store.database import Database
from modelloop.store.log import LogRow, PredictionLog
from modelloop.store.log import ids as log_ids
from modelloop.store.reports import DriftReports
from modelloop.store.retention import Retention
from modelloop.store.schema import drift_reports, feedback, prediction_ids

NOW = 1_800_000_000.0
DAY = 86_400.0


def log_rows(
    db: Database, ages_days: list[float], prefix: str = "p", per_write: int = 1
) -> list[str]:
    """Rows written `per_write` to a write: one record per write."""
    rows: list[LogRow] = [
        {
            "id": f"{prefix}{i}",
            "ts": NOW - age * DAY,
            "model": "m",
            "version": 1,
            "features": {"x": i},
            "output": {"label": "yes"},
            "latency_ms": 0.1,
        }
        for i, age in enumerate(ages_days)
    ]
    for start in range(0, len(rows), per_write):
        PredictionLog(db).write(rows[start : start + per_write])
    return [r["id"] for r in rows]


def remaining_ids(db: Database) -> list[str]:
    return logged_ids(db, "m")


def indexed_ids(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(conn.execute(select(prediction_ids.c.id)).scalars())


def labelled_ids(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(conn.execute(select(feedback.c.prediction_id)).scalars())


def test_age_bound_deletes_old_rows_and_their_feedback_in_small_batches(db: Database) -> None:
    ids = log_rows(db, [40.0] * 23 + [10.0] * 7)
    PredictionLog(db).add_feedback([(pid, "yes") for pid in ids[::2]])

    pruned = Retention(db, max_age_seconds=30 * DAY, max_rows=0, batch=5).prune(now=NOW)

    assert remaining_ids(db) == ids[23:]
    assert indexed_ids(db) == set(ids[23:])
    assert pruned.predictions == 23
    assert pruned.feedback == len(ids[0:23:2])
    assert labelled_ids(db) == set(ids[24::2])
    # a second pass finds nothing more
    assert not Retention(db, 30 * DAY, 0).prune(now=NOW)


def test_row_bound_keeps_the_newest_rows(db: Database) -> None:
    ids = log_rows(db, [1.0] * 50)

    pruned = Retention(db, max_age_seconds=0, max_rows=12, batch=7).prune(now=NOW)

    assert pruned.predictions == 38
    assert remaining_ids(db) == ids[-12:]
    assert indexed_ids(db) == set(ids[-12:])
    # under the bound: nothing to do
    assert Retention(db, 0, 12).prune(now=NOW).predictions == 0
    assert Retention(db, 0, 100).prune(now=NOW).predictions == 0


def test_either_bound_condemns_a_row(db: Database) -> None:
    ids = log_rows(db, [50.0] * 5 + [1.0] * 20)

    Retention(db, max_age_seconds=30 * DAY, max_rows=15).prune(now=NOW)

    assert remaining_ids(db) == ids[-15:]


def test_a_row_logged_late_with_an_old_time_waits_for_its_turn(db: Database) -> None:
    """Deletion walks the log in order and stops at the first row that is kept."""
    ids = log_rows(db, [40.0, 40.0, 1.0, 40.0, 1.0])

    Retention(db, max_age_seconds=30 * DAY, max_rows=0).prune(now=NOW)

    assert remaining_ids(db) == ids[2:]


def test_old_drift_reports_go_with_the_age_bound(db: Database) -> None:
    reports = DriftReports(db)
    for _ in range(3):
        reports.add("m", 1, 0.0, 1.0, 10, "ok", "ok", {})
    with db.engine.begin() as conn:
        conn.execute(drift_reports.update().values(ts=time.time() - 40 * DAY))
    reports.add("m", 1, 0.0, 1.0, 10, "ok", "ok", {})  # now: stays

    pruned = Retention(db, max_age_seconds=30 * DAY, max_rows=0).prune()

    assert pruned.reports == 3
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(drift_reports)).scalar_one() == 1


def test_no_bound_deletes_nothing(db: Database) -> None:
    ids = log_rows(db, [400.0] * 10)
    assert not Retention(db, 0, 0).prune(now=NOW)
    assert remaining_ids(db) == ids


def test_a_stop_ends_a_pass_after_the_current_batch(db: Database) -> None:
    """The service sets it on shutdown: a long pass does not hold up the drain."""
    import threading

    ids = log_rows(db, [40.0] * 20)
    stop = threading.Event()
    stop.set()
    assert Retention(db, 30 * DAY, 0, batch=5).prune(now=NOW, stop=stop).predictions == 0
    assert remaining_ids(db) == ids
    stop.clear()
    assert Retention(db, 30 * DAY, 0, batch=5).prune(now=NOW, stop=stop).predictions == 20


def test_the_row_bound_holds_to_the_record(db: Database) -> None:
    """Records of 10 rows and a bound of 25: the oldest records go while more than 25 rows
    remain, so 20 stay; a bound of a record's multiple keeps exactly that many."""
    ids = log_rows(db, [1.0] * 50, per_write=10)
    labelled = ids[5::10]  # one label in each record
    PredictionLog(db).add_feedback([(pid, "yes") for pid in labelled])

    pruned = Retention(db, max_age_seconds=0, max_rows=25, batch=2).prune(now=NOW)

    assert (pruned.predictions, pruned.feedback) == (30, 3)
    assert remaining_ids(db) == ids[30:]
    assert labelled_ids(db) == set(labelled[3:])
    assert PredictionLog(db).count() == 20
    assert not Retention(db, 0, 20).prune(now=NOW)
    assert Retention(db, 0, 19).prune(now=NOW).predictions == 10


def test_the_age_bound_goes_by_a_records_newest_row(db: Database) -> None:
    """A record is old when its newest row is: one new row keeps its record's old ones, and
    the deletion stops there."""
    ids = log_rows(db, [40.0, 40.0, 40.0, 1.0, 40.0, 40.0], per_write=2)

    pruned = Retention(db, max_age_seconds=30 * DAY, max_rows=0).prune(now=NOW)

    assert pruned.predictions == 2
    assert remaining_ids(db) == ids[2:]


def test_feedback_of_generated_ids_goes_with_its_record_only(db: Database) -> None:
    """Records of one token: deleting one deletes the labels of its rows, not its
    neighbours'."""
    token = log_ids.new_token()
    log = PredictionLog(db)
    made: list[str] = []
    for first in (0, 4, 8):
        tag = log_ids.new_tag()
        pids = [f"{log_ids.request_id(token, first, tag)}:{i}" for i in range(4)]
        rows: list[LogRow] = [
            {
                "id": pid,
                "ts": NOW - (40 if first == 0 else 1) * DAY,
                "model": "m",
                "version": 1,
                "features": {"x": 1.0},
                "output": {"value": 0.5},
                "latency_ms": 0.1,
            }
            for pid in pids
        ]
        assert log.write(rows) == 4
        made += pids
    assert log.add_feedback([(pid, 1.0) for pid in made]) == (12, [])

    pruned = Retention(db, 30 * DAY, 0).prune(now=NOW)

    assert (pruned.predictions, pruned.feedback) == (4, 4)
    assert labelled_ids(db) == set(made[4:])
    assert remaining_ids(db) == made[4:]
