"""The prediction log: columnar batches of predictions, and the feedback that labels them."""

from modelloop.store.log.batch import Batch
from modelloop.store.log.chunk import Chunk, Entry
from modelloop.store.log.prediction_log import PredictionLog
from modelloop.store.log.rows import LabelCheck, LogRow, as_log_row

__all__ = ["Batch", "Chunk", "Entry", "LabelCheck", "LogRow", "PredictionLog", "as_log_row"]
