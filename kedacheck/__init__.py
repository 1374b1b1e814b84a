"""KEDA's own kafka scaler, run against the local Kafka, next to ``services.core.scaling``."""
