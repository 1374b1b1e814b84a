"""The Pulumi program that declares the whole kafka-tasks platform on Kubernetes."""
