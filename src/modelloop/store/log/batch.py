"""A log record as its readers see it: one batch of one model version, column by column."""

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows of one model version, in the order they were logged.

    `features`: one array per feature the rows hold, float64 (NaN where a row has no value)
    when every value is a number, else an object array of the values as logged (str, number or
    None). `labels` (classification): the predicted labels as logged (str or int);
    `probabilities`: one float64 array per class key (str); `values` (regression): the
    predicted values."""

    seq: int  # the record's place in the log: the monitor's watermark
    model: str
    version: int
    ts: FloatArray
    latency_ms: FloatArray
    features: dict[str, FloatArray | ObjectArray]
    labels: ObjectArray | None = None
    probabilities: dict[str, FloatArray] = field(default_factory=dict)
    values: FloatArray | None = None

    @property
    def rows(self) -> int:
        return len(self.ts)
