"""A categorical feature's reference prepared for many windows."""

from collections.abc import Mapping, Sequence

import numpy.typing as npt

from modelloop.monitoring.stats.drift import (
    _EMPTY,
    FeatureDrift,
    _check_counts,
    _judged,
    _none_if_nan,
    _why_not,
)
from modelloop.monitoring.stats.kernels import (
    PSI_EPS,
    FloatArray,
    Statistic,
    _counts,
    _linf_against,
    _psi_against,
    _psi_shares,
    _shares,
    categorical_counts,
    missing_rate,
    rate_delta,
    unseen_rate,
)
from modelloop.store.metadata import CategoricalProfile


class CategoricalReference:
    """A categorical feature's reference profile, prepared for scoring many windows."""

    __slots__ = (
        "_error",
        "counts",
        "eps",
        "missing",
        "present",
        "profile",
        "psi_shares",
        "shares",
        "unseen",
    )

    def __init__(self, profile: CategoricalProfile, eps: float = PSI_EPS) -> None:
        self.profile = profile
        self.eps = eps
        self.missing = profile.missing
        self.counts = categorical_counts(profile.counts, profile.other)
        self.present = int(self.counts.sum())
        self.unseen = unseen_rate(profile.counts, profile.other)
        self._error: str | None = None
        self.shares = self.psi_shares = _EMPTY
        try:
            r = _counts(self.counts, "reference counts")
        except ValueError as e:  # raised when a window is judged, as `psi` would
            self._error = str(e)
            return
        self.psi_shares = _psi_shares(r, eps)
        self.shares = _shares(r)

    def drifts(
        self,
        feature: str,
        counts: FloatArray,
        missing: Sequence[int],
        thresholds: Sequence[Mapping[Statistic, float] | None],
    ) -> list[FeatureDrift]:
        """One `FeatureDrift` per row of `counts` (k, categories + 1: `categorical_counts`, the
        `other` bucket last), judged on the row's thresholds (None: not judged)."""
        totals = counts.sum(axis=-1).tolist()
        others = counts[:, -1].tolist()
        ref_rows = self.present + self.missing
        base = []
        for total, cur_missing in zip(totals, missing, strict=True):
            present = int(total)
            rows = present + cur_missing
            base.append(
                (
                    rows,
                    missing_rate(cur_missing, rows),
                    rate_delta(self.missing, ref_rows, cur_missing, rows),
                    _why_not(rows, present, self.present),
                )
            )
        judged = [i for i, b in enumerate(base) if b[3] is None]
        psi_v: list[float | None] = [None] * len(base)
        linf_v: list[float | None] = [None] * len(base)
        unseen_v: list[float | None] = [None] * len(base)
        if judged:
            if self._error is not None:
                raise ValueError(self._error)
            cur = counts if len(judged) == len(base) else counts[judged]
            _check_counts(cur, "current counts")
            if cur.shape[1] != self.counts.size:
                raise ValueError(
                    f"reference has {self.counts.size} bins, current has {cur.shape[1]}"
                )
            psi = _none_if_nan(_psi_against(self.psi_shares, cur, self.eps))
            lin = _none_if_nan(_linf_against(self.shares, cur))
            for j, i in enumerate(judged):
                psi_v[i], linf_v[i] = psi[j], lin[j]
                # `unseen_rate`: the other bucket over every present value
                total = float(totals[i] - others[i]) + others[i]
                unseen_v[i] = others[i] / total if total > 0 else None
        out = []
        for i, (rows, rate, delta, reason) in enumerate(base):
            cur_unseen = unseen_v[i]
            unseen_delta = (
                None if cur_unseen is None or self.unseen is None else cur_unseen - self.unseen
            )
            scores: dict[Statistic, float | None] = {
                "linf": linf_v[i],
                "psi": psi_v[i],
                "unseen": unseen_delta,
                "missing": None if delta is None else abs(delta),
            }
            flagged, decided = _judged(scores, "linf", thresholds[i])
            out.append(
                FeatureDrift(
                    feature=feature,
                    kind="categorical",
                    rows=rows,
                    missing=missing[i],
                    psi=psi_v[i],
                    linf=linf_v[i],
                    missing_rate=rate,
                    missing_delta=delta,
                    unseen_rate=cur_unseen,
                    unseen_delta=unseen_delta,
                    not_judged=reason,
                    flagged=flagged,
                    decided_by=decided,
                )
            )
        return out


def categorical_drift(
    feature: str,
    ref: CategoricalProfile,
    cur_counts: npt.ArrayLike,
    cur_other: int,
    cur_missing: int,
    eps: float = PSI_EPS,
) -> FeatureDrift:
    """Statistics of a categorical window (from `store.profile.categorical_bins`)."""
    c = categorical_counts(cur_counts, cur_other)
    return CategoricalReference(ref, eps).drifts(feature, c[None, :], [cur_missing], [None])[0]
