"""The local stack: a real Apache Kafka broker (KRaft) and a real Redis on 127.0.0.1, plus the
kafka-tasks API and workers. ``make up`` and the test suite both drive it.

Everything it writes lives under ``.devstack/`` (ignored by git): downloaded jars, data, logs
and ``state.json``, which records what runs where.
"""
