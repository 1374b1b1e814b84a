"""Benchmarks: kafka-tasks against a FastAPI + Celery + Redis anchor, and worker scaling.

Dev-only: everything here runs with ``uv run --group bench`` and is never imported by the
services.
"""
