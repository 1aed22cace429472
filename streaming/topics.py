"""The four topics of the event contract (DESIGN.md section 3): create them, describe them."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, for_code

from core.contract import CONTRACT_TOPICS
from core.errors import UserError
from core.settings import Settings

CREATED = "created"
EXISTS = "exists"

_TIMEOUT_MS = 30_000


class TopicError(UserError):
    """A topic could not be created or described; the message says which and why."""


def create_topics(
    bootstrap_servers: str, *, partitions: int, replication_factor: int = 1, min_insync_replicas: int = 1
) -> dict[str, str]:
    """Create the contract's topics that do not exist yet; report what happened to each.

    Returns ``{topic: outcome}`` in contract order, where the outcome is ``"created"``,
    ``"exists"``, or ``"exists with N partitions, fewer than the P asked for ..."`` (an
    existing topic is never changed: adding partitions moves keys to other partitions, which
    is the operator's decision, not a side effect of re-running this). Idempotent. Returns
    once every created topic has a leader for each partition, so producers can use them
    at once.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    admin = _admin(bootstrap_servers)
    try:
        response = admin.create_topics(
            {
                topic: {
                    "num_partitions": partitions,
                    "replication_factor": replication_factor,
                    # With acks=all, a write is acknowledged once this many replicas have it.
                    "configs": {"min.insync.replicas": str(min_insync_replicas)},
                }
                for topic in CONTRACT_TOPICS
            },
            timeout_ms=_TIMEOUT_MS,
            raise_errors=False,  # "already exists" is an expected answer, judged per topic
        )
        outcomes: dict[str, str] = {}
        for result in response["topics"]:
            error = for_code(result["error_code"])
            if result["error_code"] == 0:
                outcomes[result["name"]] = CREATED
            elif error is TopicAlreadyExistsError:
                outcomes[result["name"]] = EXISTS
            else:
                raise TopicError(
                    f"Could not create topic {result['name']} at {bootstrap_servers}: "
                    f"{error.__name__}: {result.get('error_message') or error.description}"
                )
        created = [topic for topic, outcome in outcomes.items() if outcome == CREATED]
        # CreateTopics only says the controller accepted them; metadata and leaders follow a
        # moment later, and a producer that comes first gets UnknownTopicOrPartition.
        admin.wait_for_topics(created, timeout_ms=_TIMEOUT_MS)
        existing = _partition_counts(admin, [t for t, o in outcomes.items() if o == EXISTS])
    finally:
        admin.close()
    for topic, count in existing.items():
        if count < partitions:
            outcomes[topic] = (
                f"exists with {count} partitions, fewer than the {partitions} asked for; left "
                "unchanged, because adding partitions sends keys to other partitions (if that "
                "is intended, add them with KafkaAdminClient.create_partitions)"
            )
    return {topic: outcomes[topic] for topic in CONTRACT_TOPICS}


def create_contract_topics(settings: Settings) -> dict[str, str]:
    """:func:`create_topics` with the settings' partitions and the local cluster's replication
    (three replicas, two in sync, from three nodes on; one otherwise)."""
    from streaming.broker import replication_for

    replicas, in_sync = replication_for(settings.kafka_nodes)
    return create_topics(
        settings.bootstrap_servers,
        partitions=settings.topic_partitions,
        replication_factor=replicas,
        min_insync_replicas=in_sync,
    )


def describe_topics(bootstrap_servers: str) -> dict[str, int]:
    """Partitions per contract topic, for the topics that exist (missing ones are left out)."""
    admin = _admin(bootstrap_servers)
    try:
        present = set(admin.list_topics())
        return _partition_counts(admin, [t for t in CONTRACT_TOPICS if t in present])
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    if not topics:
        return {}
    counts = {}
    for topic in admin.describe_topics(topics):
        if topic["error_code"] != 0:
            error = for_code(topic["error_code"])
            raise TopicError(f"Could not describe topic {topic['name']}: {error.__name__}")
        counts[topic["name"]] = len(topic["partitions"])
    return counts


def _admin(bootstrap_servers: str) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="engagement-topics",
            request_timeout_ms=_TIMEOUT_MS,
            bootstrap_timeout_ms=10_000,
        )
    except Exception as exc:  # kafka-python raises several types; all mean "no broker there"
        raise TopicError(
            f"No Kafka broker answers at {bootstrap_servers} ({exc}). Start the local one with "
            "`engagement kafka start`, or set ENGAGEMENT_BOOTSTRAP_SERVERS."
        ) from exc
