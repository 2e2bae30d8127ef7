"""Types of `metadata.json` and `reference.json`: the contract between training, serving and
monitoring."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["classification", "regression"]
FeatureKind = Literal["numeric", "categorical"]
Trigger = Literal["manual", "drift", "performance", "estimated_performance", "admin"]
Label = int | str


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Feature(_Model):
    name: str
    kind: FeatureKind
    categories: list[str] = Field(default_factory=list, description="categories seen in training")


class DataInfo(_Model):
    source: str
    sha256: str
    builtin: str | None = Field(default=None, description="built-in data set, if one")
    builtin_rows: int | None = Field(default=None, description="rows drawn (synthetic)")
    path: str | None = Field(default=None, description="CSV file, if one")
    target: str
    rows_raw: int
    rows_clean: int
    rows_train: int
    rows_validation: int
    rows_test: int
    dropped: dict[str, int] = Field(default_factory=dict, description="reason -> rows dropped")
    rows_feedback: int = 0


class Parity(_Model):
    rows: int
    label_mismatches: int
    max_abs_diff: float
    max_rel_diff: float


class CalibrationMap(_Model):
    """Isotonic maps of the logged probabilities: class k's calibrated probability is
    `interp(p_k, x[i], y[i])` for the i-th entry of `classes` (binary: class 1 only, class 0
    is one minus it; more classes: every class, then the row renormalised)."""

    classes: list[int] = Field(description="indices (into the model's classes) that are mapped")
    x: list[list[float]]
    y: list[list[float]]


class CalibrationFigures(_Model):
    """Expected calibration error (15 equal-width bins of the top-class probability) and Brier
    score on the held-out rows (`fitted_on`), before and after the calibration map (after:
    two-fold cross-fitted, no row judged by a map that saw it)."""

    rows: int
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float
    applied: bool = Field(description="the map is applied (it lowered the cross-fitted ECE)")
    fitted_on: str = Field(description="which data the map was fitted on")


class ErrorModel(_Model):
    """An additive model of a regression's error on the reference bins (DLE): for each feature
    (and `prediction_score`) one coefficient per slot of the monitor's window counts (numeric:
    bins, then missing; categorical: categories, other, missing). A window's expected |error|
    is `abs_intercept + sum(coef . counts) / rows`, its expected squared error likewise.

    Inside each bin of a numeric feature the error may move with the value (the outer bins
    reach beyond the training data's tails): `abs_within[f][i]` multiplies the window's
    `sum over the rows in bin i of (value - within_centres[f][i])`, from the bin's sum of the
    values the window keeps for a regression (`Window.sums`). Empty for a model fitted
    without them (before 2026-12-03)."""

    abs_intercept: float
    sq_intercept: float
    abs_terms: dict[str, list[float]]
    sq_terms: dict[str, list[float]]
    within_centres: dict[str, list[float]] = Field(
        default_factory=dict, description="per numeric feature, each bin's centre (its mean)"
    )
    abs_within: dict[str, list[float]] = Field(default_factory=dict)
    sq_within: dict[str, list[float]] = Field(default_factory=dict)
    kurtosis: float = Field(description="E[e^4] / E[e^2]^2 on held-out data, for RMSE noise")
    fitted_on: str
    test_mae_error: float = Field(
        description="estimated - realized MAE on the held-out rows, two-fold cross-fitted"
    )
    test_rmse_error: float = Field(
        description="estimated - realized RMSE on the held-out rows, two-fold cross-fitted"
    )


class Estimation(_Model):
    """What the monitor needs to estimate performance without labels."""

    calibration: CalibrationMap | None = None
    calibration_figures: CalibrationFigures | None = None
    auc_edges: list[list[float]] = Field(
        default_factory=list,
        description="fine bins of each scored class's logged probability (binary: class 1)",
    )
    error_model: ErrorModel | None = None


class ModelMetadata(_Model):
    name: str
    version: int
    task: Task
    features: list[Feature]
    outputs: list[str]
    classes: list[Label] = Field(default_factory=list)
    estimator: str
    params: dict[str, object] = Field(default_factory=dict)
    seed: int
    data: DataInfo
    metrics: dict[str, float | None]
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    primary_metric: str
    parity: Parity
    libraries: dict[str, str]
    parent_version: int | None = None
    trigger: Trigger = "manual"
    created_at: float
    onnx_sha256: str
    reference_file: str = "reference.json"
    estimation: Estimation | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


class NumericProfile(_Model):
    """Quantile bins fixed at training time.

    Bin i holds values v with edges[i-1] <= v < edges[i] (bin 0: v < edges[0]; the last bin:
    v >= edges[-1]); `missing` counts NaN. `centroids` are the bins' means (for Wasserstein).
    """

    edges: list[float]
    counts: list[int]
    centroids: list[float]
    missing: int
    mean: float
    std: float


class CategoricalProfile(_Model):
    """Category frequencies; categories outside `categories` count as `other`."""

    categories: list[str]
    counts: list[int]
    other: int
    missing: int


class ReferenceProfile(_Model):
    rows: int
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    score: NumericProfile = Field(
        description="positive-class probability (binary), top-class probability (multiclass) "
        "or predicted value (regression)"
    )
    predicted: CategoricalProfile | None = None
    labels: CategoricalProfile | None = Field(default=None, description="true classes")
    label_values: NumericProfile | None = Field(default=None, description="regression targets")
