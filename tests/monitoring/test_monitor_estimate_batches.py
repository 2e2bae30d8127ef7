"""The estimated-performance monitor tests on a real database, reading the log as batches
through test_monitor_batches' TEMPORARY reader (delete this file when log-store is merged:
test_monitor_estimate.py then runs on the store's `batches_since`)."""

from . import test_monitor_estimate as tme
from .test_monitor_batches import _batch_reader  # noqa: F401  (autouse: the temporary reader)

trained = tme.trained
registry = tme.registry
test_steady_traffic_stores_and_exports_an_estimate_close_to_the_realized = (
    tme.test_steady_traffic_stores_and_exports_an_estimate_close_to_the_realized
)
