"""The secure local stack (``devstack up --secure``): Kafka and Redis as infra deploys them.

At a fresh start it makes, under ``<home>/secrets`` (mode 0700, files 0600):

- a CA and a certificate for 127.0.0.1 signed by it (Strimzi's cluster CA and its broker
  certificates, in miniature), used by the Kafka brokers and by Redis;
- a random password for Kafka's ``admin`` (a super user, as Strimzi's operators are) and for
  every component's Kafka user (``services.core.access.Component``), and for Redis's
  ``default`` user (the administrator) and the API's and the workers' Redis users.

Kafka then listens with SASL_SSL (SCRAM-SHA-512, the only way in for clients), the brokers
talk to each other and to the controllers over mTLS with the broker certificate, and the
StandardAuthorizer refuses whatever no ACL allows. The SCRAM credentials are created by
Kafka's own ``kafka-storage format --add-scram``; the ACLs by Kafka's own ``AclCommand``
(``bin/kafka-acls.sh``), per namespace, from ``services.core.access`` (``grant``). Redis runs
with TLS only, an ACL file (the administrator with ``requirepass``'s power, one user per
service), and the same key and command limits infra gives Valkey.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.processes import DevstackError
from services.core import access
from services.core.access import Component, KafkaGrant

__all__ = ["Component", "Security"]

ADMIN = "admin"
"""Kafka's super user for the stack's own chores (topics, ACLs), as Strimzi's operators."""
BROKER_PRINCIPAL = "kafka-tasks-broker"
"""The broker certificate's CN: brokers and controllers know each other by it (mTLS)."""
SCRAM_MECHANISM = "SCRAM-SHA-512"
REDIS_ADMIN = "default"
CERT_DAYS = 365


@dataclass
class Security:
    """Where the secure stack's secrets are, and the passwords (kept in ``state.json``, which
    lives next to them under the stack's home)."""

    directory: str
    kafka_passwords: dict[str, str] = field(default_factory=dict)
    """Kafka user -> password: ``admin`` and every component."""
    redis_passwords: dict[str, str] = field(default_factory=dict)
    """Redis user -> password: ``default`` (the administrator) and every service."""
    granted: list[str] = field(default_factory=list)
    """Namespaces whose ACLs are in place (Kafka keeps them, and Redis's ACL file)."""

    @property
    def ca_file(self) -> Path:
        return Path(self.directory) / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return Path(self.directory) / "server.crt"

    @property
    def server_key(self) -> Path:
        return Path(self.directory) / "server.key"

    @property
    def broker_keystore(self) -> Path:
        """PEM keystore of the brokers: the key, then the certificate chain."""
        return Path(self.directory) / "broker-keystore.pem"

    @property
    def admin_client_config(self) -> Path:
        """Client properties of Kafka's admin, for Kafka's own tools (``--command-config``)."""
        return Path(self.directory) / "admin.properties"

    @property
    def redis_acl_file(self) -> Path:
        return Path(self.directory) / "users.acl"


def create(home: Path) -> Security:
    """Fresh certificates and passwords for a stack that starts from nothing."""
    directory = (home / "secrets").resolve()  # servers change directory before reading it
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    security = Security(
        str(directory),
        kafka_passwords={
            user: secrets.token_hex(24) for user in [ADMIN, *(c.user for c in Component)]
        },
        redis_passwords={
            user: secrets.token_hex(24)
            for user in [REDIS_ADMIN, *(c.user for c in access.REDIS_COMPONENTS)]
        },
    )
    _write_certificates(security)
    _write_private(
        security.admin_client_config,
        "\n".join(
            [
                "security.protocol=SASL_SSL",
                f"sasl.mechanism={SCRAM_MECHANISM}",
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                f'required username="{ADMIN}" password="{security.kafka_passwords[ADMIN]}";',
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={security.ca_file}",
                "",
            ]
        ),
    )
    _write_private(security.redis_acl_file, _redis_acl(security, namespaces=[]))
    return security


def _write_private(path: Path, text: str | bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(text.encode() if isinstance(text, str) else text)


def _write_certificates(security: Security) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafka-tasks local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_PRINCIPAL)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        # Server for clients, and client too: a broker presents it to the others (mTLS).
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    _write_private(security.ca_file, ca_cert.public_bytes(pem))
    _write_private(security.server_cert, chain)
    _write_private(security.server_key, key_pem)
    _write_private(security.broker_keystore, key_pem + chain)


# --- Kafka -----------------------------------------------------------------------------------


def kafka_listeners(
    security: Security, *, port: int, internal_port: int, controller_port: int
) -> list[str]:
    """The lines of a node's ``server.properties`` that secure it (listeners included)."""
    keystore = [
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={security.broker_keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={security.ca_file}",
    ]
    return [
        f"listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port},"
        f"CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port}",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
        "inter.broker.listener.name=INTERNAL",
        "controller.listener.names=CONTROLLER",
        # Clients: SCRAM-SHA-512 over TLS, like Strimzi's `scram-sha-512` TLS listener.
        f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        # Brokers and controllers: mTLS with the broker certificate, nothing else gets in.
        "listener.name.internal.ssl.client.auth=required",
        "listener.name.controller.ssl.client.auth=required",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
        *keystore,
        # `authorization: simple`: what no ACL allows is refused.
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{BROKER_PRINCIPAL};User:{ADMIN}",
    ]


def kafka_format_arguments(security: Security) -> list[str]:
    """``kafka-storage format`` arguments that create every SCRAM user with the metadata."""
    arguments = []
    for user, password in security.kafka_passwords.items():
        arguments += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
    return arguments


def kafka_settings_env(security: Security, user: str) -> dict[str, str]:
    """The ``KT_*`` variables that make a client (``services.core.kafka_security``) log in as
    ``user``."""
    return {
        "KT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KT_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "KT_KAFKA_SASL_USERNAME": user,
        "KT_KAFKA_SASL_PASSWORD": security.kafka_passwords[user],
        "KT_KAFKA_SSL_CA_FILE": str(security.ca_file),
    }


def admin_client_options(security: Security) -> dict[str, Any]:
    """aiokafka options of Kafka's admin, from the services' own builder."""
    from pydantic import SecretStr

    from services.core.kafka_security import client_options
    from services.core.settings import Settings

    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username=ADMIN,
        kafka_sasl_password=SecretStr(security.kafka_passwords[ADMIN]),
        kafka_ssl_ca_file=security.ca_file,
    )
    return client_options(settings)


def acl_commands(
    security: Security, bootstrap: str, grants: dict[Component, list[KafkaGrant]]
) -> list[list[str]]:
    """AclCommand arguments that add ``grants``: one run per user and set of operations
    (each run takes every topic and group that set applies to)."""
    commands = []
    for component, component_grants in grants.items():
        by_operations: dict[tuple[str, ...], list[KafkaGrant]] = {}
        for grant in component_grants:
            by_operations.setdefault(grant.operations, []).append(grant)
        for operations, same in by_operations.items():
            arguments = [
                "--bootstrap-server",
                bootstrap,
                "--command-config",
                str(security.admin_client_config),
                "--add",
                "--allow-principal",
                f"User:{component.user}",
            ]
            for operation in operations:
                arguments += ["--operation", operation]
            for grant in same:
                arguments += [f"--{grant.resource}", grant.name]
            commands.append(arguments)
    return commands


def grant_kafka(libs: Path, security: Security, bootstrap: str, namespace: str) -> None:
    """Add every component's ACLs for ``namespace`` with Kafka's AclCommand (bin/kafka-acls)."""
    from devstack.kafka import java_command
    from services.tasks import catalog

    grants = access.kafka_grants(namespace, catalog)
    commands = [
        java_command(libs, "org.apache.kafka.tools.AclCommand", *arguments, heap="256m")
        for arguments in acl_commands(security, bootstrap, grants)
    ]

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=180)

    # Each run is a JVM start; two at a time keeps a 2-core machine usable.
    with ThreadPoolExecutor(2) as pool:
        for done in pool.map(run, commands):
            if done.returncode != 0:
                raise DevstackError(
                    f"kafka-acls failed ({' '.join(done.args[-8:])}):\n"
                    f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )


# --- Redis -----------------------------------------------------------------------------------


def _redis_acl(security: Security, namespaces: list[str]) -> str:
    """Redis's ACL file: the administrator, and each service limited to ``namespaces``."""
    lines = [f"user {REDIS_ADMIN} on #{_sha256(security.redis_passwords[REDIS_ADMIN])} ~* &* +@all"]
    for component in access.REDIS_COMPONENTS:
        password = _sha256(security.redis_passwords[component.user])
        rules = access.redis_rules(namespaces) if namespaces else "resetkeys resetchannels -@all"
        lines.append(f"user {component.user} on #{password} {rules}")
    return "\n".join(lines) + "\n"


def _sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def redis_arguments(security: Security, port: int) -> list[str]:
    """redis-server arguments: TLS only on ``port``, the ACL file, no plain port."""
    return [
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(security.server_cert),
        "--tls-key-file",
        str(security.server_key),
        "--tls-ca-cert-file",
        str(security.ca_file),
        "--tls-auth-clients",
        "no",
        "--aclfile",
        str(security.redis_acl_file),
        "--sanitize-dump-payload",
        "yes",
    ]


def redis_url(security: Security, port: int, user: str) -> str:
    return f"rediss://{user}:{security.redis_passwords[user]}@127.0.0.1:{port}/0"


def redis_admin_kwargs(security: Security) -> dict[str, Any]:
    """redis-py keyword arguments of the administrator (devstack's own readiness check)."""
    return {
        "username": REDIS_ADMIN,
        "password": security.redis_passwords[REDIS_ADMIN],
        "ssl": True,
        "ssl_ca_certs": str(security.ca_file),
    }


def grant_redis(security: Security, port: int, namespaces: list[str]) -> None:
    """Rewrite the ACL file for ``namespaces`` and have the running Redis load it."""
    import redis

    _write_private(security.redis_acl_file, _redis_acl(security, namespaces))
    client = redis.Redis(port=port, socket_timeout=5, **redis_admin_kwargs(security))
    try:
        client.acl_load()
    finally:
        client.close()


def service_env(security: Security, redis_port: int, component: Component) -> dict[str, str]:
    """What a service started as ``component`` needs besides the plain ``KT_*`` variables."""
    redis_user = component if component in access.REDIS_COMPONENTS else Component.API
    return {
        **kafka_settings_env(security, component.user),
        "KT_REDIS_URL": redis_url(security, redis_port, redis_user.user),
        "KT_REDIS_CA_FILE": str(security.ca_file),
        # Strimzi's topic operator owns the topics in Kubernetes; here the stack's admin does.
        "KT_DECLARE_TOPICS": "false",
    }
