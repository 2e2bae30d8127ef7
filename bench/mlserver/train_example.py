"""Train a small example Pipeline and dump it as <out_dir>/model.joblib.

Pipeline: ColumnTransformer(num0..num4 -> SimpleImputer(median),
cat0 -> OneHotEncoder(handle_unknown="ignore")) -> HistGradientBoostingClassifier.

Run it with the project venv (/work/main/.venv/bin/python) so that the pickle
is produced by the same scikit-learn that the project uses; setup.sh pins the
same scikit-learn version in the MLServer venv so that MLServer can load it.

    python bench/mlserver/train_example.py /tmp/mls-model [--rows 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

NUM_COLS = [f"num{i}" for i in range(5)]
CAT_COLS = ["cat0"]


def make_data(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(NUM_COLS)))
    # Sprinkle some NaNs so the imputer has something to do.
    x[rng.random(size=x.shape) < 0.05] = np.nan
    df = pd.DataFrame(x, columns=NUM_COLS)
    df["cat0"] = rng.choice(["a", "b", "c", "d"], size=rows)
    signal = (
        np.nan_to_num(df["num0"].to_numpy())
        + 0.5 * np.nan_to_num(df["num1"].to_numpy())
        + (df["cat0"] == "b").to_numpy() * 1.0
    )
    y = (signal + rng.normal(scale=0.5, size=rows) > 0.3).astype(np.int64)
    return df, y


def build_pipeline() -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), NUM_COLS),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CAT_COLS),
        ]
    )
    return Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(max_iter=50))])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    df, y = make_data(args.rows, args.seed)
    pipe = build_pipeline().fit(df, y)
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "model.joblib")
    joblib.dump(pipe, path)
    row = df.iloc[[0]]
    print(f"scikit-learn {sklearn.__version__}: wrote {path}")
    print("row 0:", row.to_dict(orient="records")[0])
    print(
        "predict:", pipe.predict(row).tolist(), "predict_proba:", pipe.predict_proba(row).tolist()
    )


if __name__ == "__main__":
    main()
