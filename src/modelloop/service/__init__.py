"""The HTTP service: predictions, the Open Inference Protocol, feedback, admin and metrics."""
