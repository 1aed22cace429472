"""Send generated messages to Kafka: the generator's sink (DESIGN section 2, ``streaming/``).

One :class:`kafka.KafkaProducer` per call, closed explicitly. Messages go to their own topic
with their own key and their exact bytes (invalid ones included: the loader must see them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from kafka import KafkaProducer
from kafka.errors import KafkaError

from core.errors import UserError
from streaming.generator import Message

log = logging.getLogger(__name__)

# Large enough for the generator's over-64-KiB invalid messages (the contract limit is
# enforced by the loader, not by the transport), below the broker's default
# message.max.bytes (~1 MiB).
MAX_REQUEST_BYTES = 1024 * 1024
PROGRESS_EVERY = 10_000


class ProduceError(UserError):
    """Messages could not be delivered; the message says what to do next."""


def produce(
    messages: Iterable[Message],
    bootstrap_servers: str,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send every message to its topic with its key, wait until all are acknowledged by all
    in-sync replicas, and return how many were sent.

    ``progress`` is called with the running count every 10,000 messages and at the end.
    Raises :class:`ProduceError` if the broker is unreachable or a send fails.
    """
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            # Batch for throughput: the generator emits faster than one request per message.
            linger_ms=20,
            batch_size=256 * 1024,
            max_request_size=MAX_REQUEST_BYTES,
            # Fail fast with a clear message rather than retrying for the default minute.
            bootstrap_timeout_ms=10_000,
            max_block_ms=30_000,
        )
    except (KafkaError, OSError) as exc:  # 3.x raises KafkaTimeoutError when nothing answers
        raise ProduceError(
            f"cannot reach the Kafka broker at {bootstrap_servers} ({exc}); "
            "start the local one with `engagement kafka start`, or set ENGAGEMENT_BOOTSTRAP_SERVERS"
        ) from exc

    failures: list[BaseException] = []

    def on_error(exc: BaseException) -> None:
        # Called on the producer's I/O thread; only record, raise after flush.
        failures.append(exc)

    sent = 0
    try:
        for message in messages:
            future = producer.send(message.topic, value=message.value, key=message.key)
            future.add_errback(on_error)
            sent += 1
            if progress is not None and sent % PROGRESS_EVERY == 0:
                progress(sent)
            if failures:
                break
        producer.flush()
    except KafkaError as exc:
        raise ProduceError(
            f"sending to Kafka at {bootstrap_servers} failed after {sent} messages: {exc}; "
            "is the broker still running? (`engagement kafka start` starts the local one)"
        ) from exc
    finally:
        producer.close()
    if failures:
        raise ProduceError(
            f"{len(failures)} message(s) were not acknowledged by {bootstrap_servers} "
            f"(first error: {failures[0]!r}); nothing is lost by re-sending: the pipeline "
            "deduplicates on event_id"
        )
    if progress is not None:
        progress(sent)
    log.info("produced %d messages to %s", sent, bootstrap_servers)
    return sent
