"""Training errors: each says what is wrong with the input in one line."""


class TrainingError(Exception):
    """Base of the training pipeline's errors."""


class DataError(TrainingError, ValueError):
    """The data cannot be trained on as given."""


class ParityError(TrainingError):
    """The exported ONNX graph does not reproduce the scikit-learn model."""


class ConfigError(TrainingError, ValueError):
    """An option does not fit the data or the task."""
