"""Types of `metadata.json` and `reference.json`: the contract between training, serving and
monitoring."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["classification", "regression"]
FeatureKind = Literal["numeric", "categorical"]
Trigger = Literal["manual", "drift", "performance", "admin"]
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
