"""ML model serving: a registry of model versions, predictions, rollouts and drift."""
