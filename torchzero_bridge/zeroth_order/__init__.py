"""Native torch zeroth-order optimizers (gradient estimators, random search, populations)."""
