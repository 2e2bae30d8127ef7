"""Drift statistics on binned counts: pure functions, numpy only.

Training fixes the bins (`store.profile`); the monitor folds traffic into the same bins, so every
statistic here takes count vectors, never raw values, and costs the same for 1k or 10M rows.

Conventions shared by every function:

- Counts are non-negative; a vector whose total is 0 has no distribution, and a statistic that
  needs one returns None ("not judged"), never NaN and never an exception. Vectors of different
  lengths are a caller bug and raise ValueError.
- Missing values are not part of the distributions: numeric bins and category shares are over
  present values only, and the missing rate is its own statistic. An all-missing window therefore
  has no distribution statistics (None) but a defined missing rate (1.0).
- For categorical features the `other` bucket (categories not seen in training) is appended to the
  category counts, in the reference and in the window alike (`categorical_counts`).

The kernels `psi_rows`, `wasserstein_rows` and `linf_rows` take 2-D arrays (one distribution per
row) so `noise.py` computes exactly the same numbers, vectorised over thousands of resampled
windows.
"""

from modelloop.monitoring.stats.categorical import (
    CategoricalReference,
    categorical_drift,
)
from modelloop.monitoring.stats.drift import (
    FeatureDrift,
    count_rows,
    judge,
)
from modelloop.monitoring.stats.kernels import (
    CATEGORICAL_STATISTICS,
    NUMERIC_STATISTICS,
    PSI_EPS,
    FloatArray,
    Kind,
    Statistic,
    bin_positions,
    categorical_counts,
    linf,
    linf_rows,
    missing_rate,
    psi,
    psi_rows,
    rate_delta,
    unseen_rate,
    wasserstein_binned,
    wasserstein_rows,
)
from modelloop.monitoring.stats.numeric import (
    NumericGroup,
    NumericReference,
    numeric_drift,
)

__all__ = [
    "CATEGORICAL_STATISTICS",
    "NUMERIC_STATISTICS",
    "PSI_EPS",
    "CategoricalReference",
    "FeatureDrift",
    "FloatArray",
    "Kind",
    "NumericGroup",
    "NumericReference",
    "Statistic",
    "bin_positions",
    "categorical_counts",
    "categorical_drift",
    "count_rows",
    "judge",
    "linf",
    "linf_rows",
    "missing_rate",
    "numeric_drift",
    "psi",
    "psi_rows",
    "rate_delta",
    "unseen_rate",
    "wasserstein_binned",
    "wasserstein_rows",
]
