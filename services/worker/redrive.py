"""Re-drive dead-lettered tasks: submit each again, as a new task with the same payload.

A failed task stays FAILURE (terminal states are final, so its record and history remain
true); the re-driven copy gets a new id, printed next to the old one. The dead-letter topic is
read with its own consumer group, so each dead letter is re-driven once.

    python -m services.worker.redrive [--dry-run] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from uuid import UUID

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from services.core import topics
from services.core.catalog import Catalog
from services.core.errors import InvalidPayloadError, PayloadTooLargeError, UnknownTaskError
from services.core.kafka_security import client_options
from services.core.lag import topic_partitions
from services.core.models import DeadLetter
from services.core.publisher import TaskPublisher
from services.core.redis_client import connect
from services.core.settings import Settings
from services.core.store import TaskStore
from services.core.submission import Submitter


@dataclass(frozen=True)
class Redriven:
    old_id: UUID
    new_id: UUID | None
    """None in a dry run, or when the task can no longer be submitted (see ``skipped``)."""
    task: str
    error: str
    skipped: str | None = None


async def redrive(
    settings: Settings, catalog: Catalog, *, limit: int | None = None, dry_run: bool = False
) -> list[Redriven]:
    topic = topics.dead_letter_topic(settings.namespace)
    security = client_options(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=topics.redrive_group(settings.namespace),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **security,
    )
    redis = connect(settings)
    publisher = TaskPublisher(settings)
    submitter = Submitter(TaskStore.from_settings(redis, settings), publisher, catalog, settings)
    await consumer.start()
    done: list[Redriven] = []
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security)
        await admin.start()
        try:
            partitions = await topic_partitions(admin, [topic])
        finally:
            await admin.close()
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            while (limit is None or len(done) < limit) and await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=100)
                for record in batch.get(tp, []):
                    if limit is not None and len(done) >= limit:
                        break
                    letter = DeadLetter.model_validate_json(record.value)
                    done.append(
                        await _resubmit(letter, submitter)
                        if not dry_run
                        else Redriven(
                            letter.message.id, None, letter.message.task, letter.error.message
                        )
                    )
                    if not dry_run:
                        await consumer.commit({tp: record.offset + 1})
    finally:
        await consumer.stop()
        await publisher.stop()
        await redis.aclose()
    return done


async def _resubmit(letter: DeadLetter, submitter: Submitter) -> Redriven:
    """Submit the dead-lettered task again through the one submission path. Its idempotency
    key is the old task's id, so a dead letter written twice (a worker that died between the
    dead letter and FAILURE) is re-driven once."""
    old = letter.message
    try:
        submission = await submitter.submit(
            old.task, old.payload, idempotency_key=f"redrive-{old.id}"
        )
    except (UnknownTaskError, InvalidPayloadError, PayloadTooLargeError) as refused:
        return Redriven(old.id, None, old.task, letter.error.message, skipped=str(refused))
    return Redriven(old.id, submission.record.id, old.task, letter.error.message)


def main(argv: list[str] | None = None) -> int:
    from services.tasks import catalog

    parser = argparse.ArgumentParser(prog="kafka-tasks-redrive", description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="list, do not submit")
    parser.add_argument("--limit", type=int, default=None, help="at most this many")
    args = parser.parse_args(argv)
    results = asyncio.run(redrive(Settings(), catalog, limit=args.limit, dry_run=args.dry_run))
    for item in results:
        target = f"-> {item.new_id}" if item.new_id else (item.skipped or "(dry run)")
        print(f"{item.old_id} {item.task:<12} {target}  was: {item.error}")
    print(f"{len(results)} dead-lettered task(s) {'listed' if args.dry_run else 're-driven'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
