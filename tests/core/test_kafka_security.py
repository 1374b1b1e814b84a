"""The services' Kafka security settings: refused when incomplete, built in one place."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from devstack import processes, stack
from services.core.errors import ConfigurationError
from services.core.kafka_security import (
    PROBE_SECONDS,
    client_options,
    faust_credentials,
    verify_credentials,
)
from services.core.settings import Settings


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs kafka_sasl_username and"),
        (
            {"kafka_sasl_username": "u", "kafka_sasl_password": "p"},
            "set KT_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        ({"kafka_ssl_ca_file": "/ca.crt"}, "kafka_security_protocol is PLAINTEXT"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "/c.crt"},
            "go together",
        ),
        ({"redis_ca_file": "/ca.crt"}, "use a rediss:// URL"),
    ],
)
def test_incomplete_security_settings_are_refused_with_what_to_set(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.model_validate(fields)


def test_plain_text_stays_plain() -> None:
    assert client_options(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_sasl_ssl_gives_every_client_the_same_user_and_a_verifying_tls_context(
    secure_backends: stack.StackState,
) -> None:
    assert secure_backends.security is not None
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="kafka-tasks-worker",
        kafka_sasl_password=SecretStr("secret"),
        kafka_ssl_ca_file=secure_backends.security.ca_file,
    )
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "kafka-tasks-worker"
    assert options["sasl_plain_password"] == "secret"
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    credentials = faust_credentials(settings)
    assert credentials.username == "kafka-tasks-worker"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"


def test_a_missing_or_unreadable_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    missing = Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tmp_path / "none.crt")
    with pytest.raises(ConfigurationError, match="not a readable file"):
        client_options(missing)
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        client_options(Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=garbage))


async def test_the_start_check_lets_through_a_kafka_that_does_not_answer() -> None:
    """An outage is no reason to refuse a start: a closed port, and a broker that takes the
    connection but never answers (paused), both pass, the second within the check's bound."""
    closed = processes.free_port()
    taken: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _, writer: taken.append(writer), "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    settings = Settings(
        kafka_bootstrap_servers=f"127.0.0.1:{closed},127.0.0.1:{silent_port}",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="kafka-tasks-worker",
        kafka_sasl_password=SecretStr("secret"),
    )
    try:
        async with asyncio.timeout(PROBE_SECONDS + 2):
            await verify_credentials(settings)
    finally:
        for writer in taken:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert taken  # the silent broker was reached, so the bound was what ended the check
