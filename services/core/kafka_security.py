"""How every Kafka client of the services authenticates and encrypts: one place.

``client_options(settings)`` gives the keyword arguments every aiokafka client takes (producer,
consumer, admin): ``security_protocol``, the TLS context and, for SASL_SSL, the SCRAM user.
``faust_credentials(settings)`` gives the same to faust (the worker's consumer and producer).
Nothing else in the services spells out a security setting.

``access_denied`` turns Kafka's authentication and authorization refusals into one clear
error (``AccessDeniedError``) that names the user, the operation and what to check;
``verify_credentials`` finds, at start, a refused login that aiokafka reports as an outage.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from services.core.errors import AccessDeniedError, ConfigurationError
from services.core.settings import Settings

AUTHORIZATION_ERRORS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
AUTHENTICATION_ERRORS = (
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of every Kafka connection: the brokers' certificates are checked
    against ``kafka_ssl_ca_file`` (or the system's trust store) and their host names; the
    client certificate is offered for mTLS."""
    for name in ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise ConfigurationError(
                f"{name} is {str(path)!r}, which is not a readable file (KT_{name.upper()})"
            )
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_ssl_ca_file,
            certfile=settings.kafka_ssl_cert_file,
            keyfile=settings.kafka_ssl_key_file,
        )
    except ssl.SSLError as error:
        raise ConfigurationError(
            f"the Kafka TLS files cannot be loaded ({error}): kafka_ssl_ca_file must hold PEM "
            "certificates, kafka_ssl_cert_file/kafka_ssl_key_file a matching PEM pair"
        ) from error
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and
    ``AIOKafkaAdminClient`` (next to ``bootstrap_servers``)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {"security_protocol": "PLAINTEXT"}
    options: dict[str, Any] = {"security_protocol": protocol, "ssl_context": ssl_context(settings)}
    if protocol == "SASL_SSL":
        assert settings.kafka_sasl_password is not None  # the settings validator checked it
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return options


def faust_credentials(settings: Settings) -> Any:
    """faust's ``broker_credentials`` for the same connection (None: plain text)."""
    import faust  # the worker's dependency; imported here so the API never loads it

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    assert settings.kafka_sasl_password is not None
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )


def access_denied(
    error: BaseException, *, user: str | None, operation: str
) -> AccessDeniedError | None:
    """``error`` as an AccessDeniedError if Kafka refused the credentials or the operation
    (``operation`` says what was attempted, e.g. "write to topic kt.retry"); None otherwise."""
    if isinstance(error, AUTHORIZATION_ERRORS):
        return AccessDeniedError(
            "kafka",
            user=user,
            operation=operation,
            reason=(
                f"{type(error).__name__}: the broker's ACLs do not allow it (the component's "
                "KafkaUser lists what it may do)"
            ),
        )
    if isinstance(error, AUTHENTICATION_ERRORS):
        return AccessDeniedError(
            "kafka",
            user=user,
            operation=operation,
            reason=(
                f"{type(error).__name__}: the broker refused the credentials; check "
                "KT_KAFKA_SASL_USERNAME / KT_KAFKA_SASL_PASSWORD and kafka_sasl_mechanism"
            ),
        )
    return None


PROBE_SECONDS = 3.0
"""For the whole check: a broker that answers logs in or refuses in milliseconds; a paused one
would otherwise hold a starting service for a request timeout per bootstrap server."""


async def verify_credentials(settings: Settings) -> None:
    """Refuse to start with credentials Kafka rejects, as with Redis's: a wrong password is a
    clear error at start (ConfigurationError), not a service waiting for Kafka to let it in.

    aiokafka's clients log a refused login while they bootstrap and then raise a bare
    ``KafkaConnectionError("Unable to bootstrap ...")``, which reads like Kafka being down.
    One direct connection to the bootstrap servers tells the two apart. A Kafka that does not
    answer in time is no reason to refuse (that is an outage, which the services wait out)."""
    if settings.kafka_security_protocol != "SASL_SSL":
        return
    options = client_options(settings)
    timeout_ms = int(PROBE_SECONDS * 1000)
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            for host, port, _ in collect_hosts(settings.kafka_bootstrap_servers, randomize=False):
                try:
                    conn = await create_conn(host, port, request_timeout_ms=timeout_ms, **options)
                except AUTHENTICATION_ERRORS as error:
                    raise ConfigurationError(
                        f"Kafka refused the login as {settings.kafka_sasl_username!r} ({error}): "
                        "set KT_KAFKA_SASL_USERNAME / KT_KAFKA_SASL_PASSWORD to this component's "
                        "KafkaUser and its password, and kafka_sasl_mechanism to the mechanism "
                        "the user was made for"
                    ) from error
                except (KafkaError, OSError):
                    continue  # this broker does not answer; another may
                conn.close()
                return
    except TimeoutError:
        return
