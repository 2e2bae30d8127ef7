"""modelloop: serve scikit-learn models as ONNX, watch them, retrain them."""

__version__ = "0.1.0"
