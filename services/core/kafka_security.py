"""How every Kafka client of the services authenticates and encrypts: one place.

``client_options(settings)`` gives the keyword arguments every aiokafka client takes (producer,
consumer, admin): ``security_protocol``, the TLS context and, for SASL_SSL, the SCRAM user.
``faust_credentials(settings)`` gives the same to faust (the worker's consumer and producer).
Nothing else in the services spells out a security setting.

``access_denied`` turns Kafka's authentication and authorization refusals into one clear
error (``AccessDeniedError``) that names the user, the operation and what to check.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
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
