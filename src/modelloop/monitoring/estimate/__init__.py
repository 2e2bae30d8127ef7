"""Performance estimated without labels, from what the monitor already aggregates: CBPE for
classifiers (`cbpe`, on the window's `aggregate.ScoreCounts`), DLE for regressions (`dle`, on
the window's bin counts); `estimator.Estimator` picks the one a version ships for."""
