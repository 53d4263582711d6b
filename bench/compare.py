"""Do two implementations give the same answers? Row sets by key, values within tolerance.

A speed-up only counts if the baseline computes the same thing, so the runner checks every
baseline mart against the dbt mart on the same data and reports mismatches beside the ratio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

KEYS: dict[str, list[str]] = {
    "pattern_trends": ["pattern_id", "week"],
    "pattern_trend_summary": ["pattern_id"],
    "file_cooccurrence": ["project_id", "file_a", "file_b"],
    "pattern_predictions": ["context_cluster_id", "pattern_id"],
}
RTOL, ATOL = 1e-6, 1e-9


@dataclass(frozen=True)
class Agreement:
    rows_mart: int
    rows_baseline: int
    rows_matched: int  # keys present in both
    values_compared: int
    values_differing: int  # outside RTOL/ATOL, or null on one side only
    max_abs_diff: float

    @property
    def same(self) -> bool:
        return (
            self.rows_mart == self.rows_baseline == self.rows_matched and self.values_differing == 0
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "same": self.same}


def _normalize(column: pd.Series, like: pd.Series) -> pd.Series:
    """Bring a baseline column to the mart column's type (SQLite gives dates as text)."""
    if (
        pd.api.types.is_datetime64_any_dtype(like)
        or like.map(type).astype(str).str.contains("date").any()
    ):
        return pd.to_datetime(column)
    return column


def agree(mart: pd.DataFrame, baseline: pd.DataFrame, keys: list[str]) -> Agreement:
    """Compare every non-key column the two frames share."""
    mart, baseline = mart.copy(), baseline.copy()
    for key in keys:
        mart[key] = _normalize(mart[key], mart[key])
        baseline[key] = _normalize(baseline[key], mart[key])
    joined = mart.merge(baseline, on=keys, suffixes=("_m", "_b"))
    compared = differing = 0
    max_diff = 0.0
    for column in (c for c in mart.columns if c in baseline.columns and c not in keys):
        left, right = joined[f"{column}_m"], joined[f"{column}_b"]
        if (
            pd.api.types.is_datetime64_any_dtype(left)
            or left.map(type).astype(str).str.contains("date").any()
        ):
            left, right = pd.to_datetime(left), pd.to_datetime(right)
            bad = ~((left == right) | (left.isna() & right.isna()))
        elif pd.api.types.is_numeric_dtype(left) or pd.api.types.is_numeric_dtype(right):
            a = pd.to_numeric(left, errors="coerce").astype(float).to_numpy()
            b = pd.to_numeric(right, errors="coerce").astype(float).to_numpy()
            both = ~np.isnan(a) & ~np.isnan(b)
            bad = ~(np.isclose(a, b, rtol=RTOL, atol=ATOL) | (np.isnan(a) & np.isnan(b)))
            if both.any():
                max_diff = max(max_diff, float(np.abs(a[both] - b[both]).max()))
        else:
            bad = ~((left.astype(str) == right.astype(str)) | (left.isna() & right.isna()))
        compared += len(joined)
        differing += int(np.asarray(bad).sum())
    return Agreement(len(mart), len(baseline), len(joined), compared, differing, max_diff)
