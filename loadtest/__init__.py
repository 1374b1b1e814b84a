"""Locust load tests for kafka-tasks (run with ``make loadtest``; see locustfile.py)."""
