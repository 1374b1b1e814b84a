"""Apache Kafka in KRaft mode from its own Maven Central jars, on 127.0.0.1.

One node is a combined controller+broker; ``brokers=3`` starts three combined nodes that form
one quorum, for fault tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from devstack import secure, tools
from devstack.processes import DevstackError, alive, free_port, spawn, tail, wait_for

POM = Path(__file__).with_name("pom.xml")

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    pid: int
    directory: str
    cluster_id: str = ""

    @property
    def log(self) -> Path:
        return Path(self.directory) / "server.log"


def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not match:
        raise DevstackError(f"no kafka.version in {POM}")
    return match.group(1)


def ensure_jars(home: Path) -> Path:
    """Download the broker's jars once; later calls reuse them (keyed by the pom's content)."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    # Absolute: Maven resolves a relative output directory against the pom's own folder.
    libs = home.resolve() / "cache" / f"kafka-{kafka_version()}-{digest}"
    if (libs / ".complete").exists():
        return libs
    tools.ensure("java", "mvn")
    print(f"devstack: fetching Apache Kafka {kafka_version()} jars from Maven Central", flush=True)
    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    result = subprocess.run(
        [
            "mvn",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        raise DevstackError(f"maven could not fetch Kafka's jars:\n{result.stdout[-4000:]}")
    jars = list(partial.glob("*.jar"))
    print(f"devstack: {len(jars)} jars cached in {libs}", flush=True)
    (partial / ".complete").write_text(digest)
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    return libs


def java_command(
    libs: Path, *args: str, heap: str = "512m", log4j: Path | None = None
) -> list[str]:
    argv = ["java", f"-Xmx{heap}", f"-Xms{min(256, int(heap[:-1]))}m", "-XX:+UseG1GC"]
    argv += ["-Djava.awt.headless=true"]
    if log4j is not None:
        argv.append(f"-Dlog4j2.configurationFile={log4j}")
    return [*argv, "-cp", f"{libs}/*", *args]


def start_cluster(
    home: Path,
    *,
    brokers: int = 1,
    preferred_port: int | None = 9092,
    security: secure.Security | None = None,
) -> list[KafkaNode]:
    """Format fresh storage for ``brokers`` combined nodes and start them; with ``security``
    each listens with SASL_SSL, talks to the others over mTLS and authorizes with ACLs
    (``devstack.secure``)."""
    tools.ensure("java")
    libs = ensure_jars(home)
    root = home / "kafka"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log4j = root / "log4j2.properties"
    log4j.write_text(_LOG4J2)
    ports = []
    internal_ports = {}
    for index in range(brokers):
        port = free_port(preferred_port + index if preferred_port else None)
        controller = free_port()
        ports.append((index + 1, port, controller))
        if security is not None:
            internal_ports[index + 1] = free_port()
    voters = ",".join(f"{node}@127.0.0.1:{controller}" for node, _, controller in ports)
    cluster_id = _cluster_id()
    replication = min(3, brokers)
    nodes = []
    for node_id, port, controller in ports:
        directory = root / f"node-{node_id}"
        directory.mkdir()
        config = directory / "server.properties"
        listeners = (
            [
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ]
            if security is None
            else secure.kafka_listeners(
                security,
                port=port,
                internal_port=internal_ports[node_id],
                controller_port=controller,
            )
        )
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={node_id}",
                    f"controller.quorum.voters={voters}",
                    *listeners,
                    f"log.dirs={directory / 'data'}",
                    # Topics are declared by the services (locally) or by Strimzi (in
                    # Kubernetes), never created as a side effect of a produce.
                    "auto.create.topics.enable=false",
                    "num.partitions=4",
                    f"default.replication.factor={replication}",
                    f"min.insync.replicas={max(1, replication - 1)}",
                    f"offsets.topic.replication.factor={replication}",
                    "offsets.topic.num.partitions=8",
                    f"transaction.state.log.replication.factor={replication}",
                    f"transaction.state.log.min.isr={max(1, replication - 1)}",
                    "group.initial.rebalance.delay.ms=0",
                    "log.segment.bytes=16777216",
                    "",
                ]
            )
        )
        formatted = subprocess.run(
            java_command(
                libs,
                "kafka.tools.StorageTool",
                "format",
                # One argument: a random cluster id may start with "-", which argparse would
                # take for an option after a separate "-t".
                f"--cluster-id={cluster_id}",
                "-c",
                str(config),
                *(secure.kafka_format_arguments(security) if security is not None else []),
                heap="256m",
                log4j=log4j,
            ),
            capture_output=True,
            text=True,
        )
        if formatted.returncode != 0:
            raise DevstackError(
                f"formatting Kafka storage failed:\n{formatted.stdout}{formatted.stderr}"
            )
        log = directory / "server.log"
        pid = spawn(java_command(libs, "kafka.Kafka", str(config), log4j=log4j), log_file=log)
        nodes.append(KafkaNode(node_id, port, controller, pid, str(directory), cluster_id))
    return nodes


def restart_node(home: Path, node: KafkaNode) -> KafkaNode:
    """Start a stopped node again on its own config and data (fault tests)."""
    libs = ensure_jars(home)
    directory = Path(node.directory)
    argv = java_command(
        libs,
        "kafka.Kafka",
        str(directory / "server.properties"),
        log4j=directory.parent / "log4j2.properties",
    )
    node.pid = spawn(argv, log_file=node.log)
    return node


def bootstrap_servers(nodes: list[KafkaNode]) -> str:
    return ",".join(f"127.0.0.1:{node.port}" for node in nodes)


def wait_ready(
    nodes: list[KafkaNode],
    *,
    timeout: float = 90.0,
    security: secure.Security | None = None,
) -> None:
    """Wait until every broker is registered with the quorum and answers metadata requests.

    The answer must come from this cluster (its cluster id): another Kafka that took the port
    first would otherwise pass for ours while our broker died failing to bind.
    """
    bootstrap = bootstrap_servers(nodes)
    options = secure.admin_client_options(security) if security is not None else {}

    def ready() -> bool:
        for node in nodes:
            if not alive(node.pid):
                raise DevstackError(f"Kafka node {node.node_id} exited:\n{tail(node.log)}")
        # A thread of its own, so that this also works when called from a running event loop.
        with ThreadPoolExecutor(1) as thread:
            try:
                cluster_id, registered = thread.submit(
                    asyncio.run, _registered_brokers(bootstrap, options)
                ).result()
            except Exception:
                return False
        if nodes[0].cluster_id and cluster_id != nodes[0].cluster_id:
            raise DevstackError(
                f"another Kafka cluster ({cluster_id}) answers on {bootstrap}; stop it or "
                "use another --home"
            )
        return registered >= len(nodes)

    if not wait_for(ready, timeout=timeout, interval=0.5):
        logs = "\n".join(f"--- {n.log}\n{tail(n.log)}" for n in nodes)
        raise DevstackError(f"Kafka did not become ready in {timeout:.0f}s:\n{logs}")


async def _registered_brokers(
    bootstrap: str, options: dict[str, Any] | None = None
) -> tuple[str, int]:
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    # Refused connections are expected while the broker starts; don't print each one.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=3000, **(options or {})
    )
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        return str(cluster["cluster_id"]), len(cluster["brokers"])
    finally:
        await admin.close()


def _cluster_id() -> str:
    # KRaft wants a base64url-encoded 16-byte UUID, as `kafka-storage random-uuid` prints.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def as_dict(nodes: list[KafkaNode]) -> list[dict[str, object]]:
    return [asdict(node) for node in nodes]


if __name__ == "__main__":  # pragma: no cover - `python -m devstack.kafka` prints the version
    print(kafka_version(), file=sys.stdout)
