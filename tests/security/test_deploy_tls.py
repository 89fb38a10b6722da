"""deploy/mosquitto.conf as shipped (paths and ports moved into a temp dir), with certificates
made by docs/SECURITY.md's own OpenSSL block and credentials from `devices credentials`."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest

from devices.credentials import generate
from devices.model import Device
from devices.registry import Registry
from ingest.mqtt import ConsumerOptions, TlsOptions
from ingest.wire import WireConsumer
from tests.security.clients import ACCEPTED, NOT_AUTHORISED, Client, Received, connack
from tests.support.mosquitto import Mosquitto
from tests.support.process import free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NOW = 1_764_403_200_000

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


def make_certs(directory: Path) -> Path:
    """Run the certificate block of docs/SECURITY.md in ``directory`` for localhost/127.0.0.1."""
    doc = (REPO / "docs" / "SECURITY.md").read_text(encoding="utf-8")
    block = re.search(r"## Certificates.*?```sh\n(.*?)```", doc, re.S).group(1)
    assert "BROKER_DNS=mqtt.example.org\n" in block and "BROKER_IP=10.0.0.5\n" in block
    block = block.replace("BROKER_DNS=mqtt.example.org", "BROKER_DNS=localhost").replace(
        "BROKER_IP=10.0.0.5", "BROKER_IP=127.0.0.1")
    directory.mkdir(parents=True)
    subprocess.run(["bash", "-c", block], cwd=directory, check=True, capture_output=True)
    return directory


def deploy_conf(broker_dir: Path, plain: int, tls: int, nodes: int, certs: Path, etc: Path) -> str:
    """deploy/mosquitto.conf with its ports, paths and log moved; each replaced line must exist."""
    text = (REPO / "deploy" / "mosquitto.conf").read_text()
    for old, new in (("listener 1883 127.0.0.1\n", f"listener {plain} 127.0.0.1\n"),
                     ("listener 8883\n", f"listener {tls} 127.0.0.1\n"),
                     ("listener 8884\n", f"listener {nodes} 127.0.0.1\n"),
                     ("/etc/mosquitto/certs/", f"{certs}/"),
                     ("password_file /etc/mosquitto/passwd", f"password_file {etc}/passwd"),
                     ("acl_file /etc/mosquitto/acl", f"acl_file {etc}/acl"),
                     ("persistence_location /var/lib/mosquitto/", f"persistence_location {broker_dir}/"),
                     ("log_dest syslog", f"log_dest file {broker_dir}/mosquitto.log")):
        assert old in text, f"deploy/mosquitto.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text + "user root\n"  # as root, stay root: the temp dir is not the mosquitto user's


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    certs, other = make_certs(tmp / "certs"), make_certs(tmp / "other-ca")
    nodes = make_certs(tmp / "nodes-ca")  # the nodes' own CA and a node's certificate (client.crt)
    shutil.copy(nodes / "ca.crt", certs / "nodes-ca.crt")
    reg = Registry.open(tmp / "state.db")
    reg.upsert([Device("bridge-a", "bridge", "武昌区")])
    out = generate(reg, tmp / "etc", now_ms=NOW, all_new=True, consumers=["citywatch"])
    reg.close()
    pw = {i.username: i.password for i in out.issued}
    brokers = []

    def start(require_certificate: bool = False) -> Mosquitto:
        broker = Mosquitto(tmp / f"broker-{len(brokers)}")
        broker.tls_port, broker.nodes_port = free_port(), free_port()
        conf = deploy_conf(broker.dir, broker.port, broker.tls_port, broker.nodes_port, certs, tmp / "etc")
        if require_certificate:
            assert "require_certificate false\n" in conf
            conf = conf.replace("require_certificate false\n", "require_certificate true\n")
        broker.conf.write_text(conf)
        brokers.append(broker.start())
        return broker

    yield {"start": start, "certs": certs, "other": other, "nodes": nodes, "pw": pw}
    for b in brokers:
        b.stop()


@needs_openssl
def test_the_shipped_config_over_tls(deployed):
    """A device over TLS reaches citywatch's consumer on the loopback listener; a client that
    trusts another CA refuses the broker; client ids are bound to users on the TLS listener too."""
    broker, pw, certs = deployed["start"](), deployed["pw"], deployed["certs"]
    received = Received()
    consumer = WireConsumer(broker.url, received, ConsumerOptions(
        client_id="citywatch-ingest", topics=["city/#"], username="citywatch", password=pw["citywatch"]))
    consumer.start()
    try:
        assert wait_for(consumer.subscribed.is_set, 10)
        ca, other_ca = tls_context(certs / "ca.crt"), tls_context(deployed["other"] / "ca.crt")
        with pytest.raises(ssl.SSLCertVerificationError):
            connack(broker.tls_port, "bridge-a", "bridge-a", pw["bridge-a"], tls=other_ca)
        assert connack(broker.tls_port, "bridge-a", "bridge-a", pw["bridge-a"] + "x", tls=ca) == NOT_AUTHORISED
        for _ in range(20):  # the consumer's session stays its own over TLS too
            assert connack(broker.tls_port, "citywatch", "bridge-a", pw["bridge-a"], tls=ca) == ACCEPTED
        tag = uuid.uuid4().hex[:12].encode() + b":"
        a = Client(broker.tls_port, "bridge-a", pw["bridge-a"], tls=ca)
        try:
            a.publish("city/bridge/bridge-a/telemetry", tag + b"over tls")
            assert received.wait(tag, b"over tls") == [("city/bridge/bridge-a/telemetry", tag + b"over tls")]
        finally:
            a.close()
        assert consumer.connected.is_set()
        assert broker.log.read_text().count(" as citywatch (") == 1
    finally:
        consumer.stop()


@needs_openssl
def test_require_certificate(deployed):
    """With require_certificate true, a client without a certificate from the CA is refused
    during the handshake; with one (docs/SECURITY.md step 3), its password is still checked."""
    certs, pw = deployed["certs"], deployed["pw"]
    strict = deployed["start"](require_certificate=True)
    with pytest.raises(ssl.SSLError):  # the certificate_required alert, or EOF if the broker closes first
        connack(strict.tls_port, "bridge-a", "bridge-a", pw["bridge-a"], tls=tls_context(certs / "ca.crt"))
    with_cert = tls_context(certs / "ca.crt", certs / "client.crt", certs / "client.key")
    assert connack(strict.tls_port, "bridge-a", "bridge-a", pw["bridge-a"], tls=with_cert) == ACCEPTED
    assert connack(strict.tls_port, "bridge-a", "bridge-a", "wrong", tls=with_cert) == NOT_AUTHORISED


@needs_openssl
def test_the_nodes_listener_keeps_partition_client_ids(deployed):
    """The nodes' listener (8884) keeps the client ids nodes send, so one node account can hold
    several partition sessions; only a certificate from the nodes' CA gets in and the password is
    still checked, so a device (no certificate, or one from the devices' CA) cannot take one."""
    broker, pw, certs, nodes = deployed["start"](), deployed["pw"], deployed["certs"], deployed["nodes"]
    device_cert = tls_context(certs / "ca.crt", certs / "client.crt", certs / "client.key")
    for ctx in (tls_context(certs / "ca.crt"), device_cert):
        with pytest.raises((ssl.SSLError, ConnectionError)):  # refused in the handshake, or closed right after it
            connack(broker.nodes_port, "citywatch-rules-p0", "bridge-a", pw["bridge-a"], tls=ctx)
    node_tls = tls_context(certs / "ca.crt", nodes / "client.crt", nodes / "client.key")
    assert connack(broker.nodes_port, "citywatch-rules-p0", "citywatch", "wrong", tls=node_tls) == NOT_AUTHORISED
    tls = TlsOptions(str(certs / "ca.crt"), str(nodes / "client.crt"), str(nodes / "client.key"))
    received = [Received(), Received()]
    consumers = [WireConsumer(f"mqtts://localhost:{broker.nodes_port}", r, ConsumerOptions(
        client_id=f"citywatch-rules-p{i}", topics=["city/#"], username="citywatch", password=pw["citywatch"],
        tls=tls)) for i, r in enumerate(received)]
    for c in consumers:
        c.start()
    try:
        assert wait_for(lambda: all(c.subscribed.is_set() for c in consumers), 10)
        tag = uuid.uuid4().hex[:12].encode() + b":"
        device = Client(broker.tls_port, "bridge-a", pw["bridge-a"], tls=tls_context(certs / "ca.crt"))
        try:
            device.publish("city/bridge/bridge-a/telemetry", tag + b"to both")
            for r in received:
                assert r.wait(tag, b"to both") == [("city/bridge/bridge-a/telemetry", tag + b"to both")]
        finally:
            device.close()
        assert all(c.connected.is_set() for c in consumers)  # neither session took the other's place
        log = broker.log.read_text()
        assert log.count(" as citywatch-rules-p0 (") == 1 and log.count(" as citywatch-rules-p1 (") == 1
    finally:
        for c in consumers:
            c.stop()
