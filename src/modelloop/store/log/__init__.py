"""The prediction log: columnar batches of predictions, and the feedback that labels them."""
