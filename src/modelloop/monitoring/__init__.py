"""The monitor: drift statistics, window aggregation, trigger rule, worker and drift report."""
