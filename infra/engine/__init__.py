"""The real Pulumi engine and Kubernetes provider, built from the Go module proxy and driven
through the Automation API (``python -m infra.engine``, ``make engine``, ``make preview``)."""
