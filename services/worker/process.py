"""The worker process: faust's Worker, started again in place when Kafka did not answer while
it started.

The topics are declared (and Kafka awaited) before faust starts, but Kafka can go down between
that and faust's own connections: faust's producer then fails to bootstrap and mode exits the
process. On Kubernetes that is a crash loop for the length of the outage; run by hand, the
worker stays dead. Instead the process replaces itself (same PID, same arguments), waits for
Kafka again, and starts afresh: faust's app cannot be started twice in one process.
"""

from __future__ import annotations

import os
import sys

import faust
from aiokafka.errors import KafkaError

from services.core.logs import get_logger

log = get_logger(__name__)


class Worker(faust.Worker):
    kafka_unreachable_at_start = False
    """Set when starting failed because Kafka did not answer."""

    async def start(self) -> None:
        try:
            await super().start()
        except KafkaError:
            self.kafka_unreachable_at_start = True
            raise


def run(worker: Worker) -> None:
    """Run ``worker`` until it stops; start the process again if Kafka failed it at start."""
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if not worker.kafka_unreachable_at_start:
            raise
        log.warning("kafka stopped answering while the worker started; starting again")
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
