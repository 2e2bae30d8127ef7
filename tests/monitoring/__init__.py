"""Tests of the drift statistics and of thresholds above sampling noise."""
