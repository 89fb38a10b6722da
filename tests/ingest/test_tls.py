"""TLS with certificates made in the test: a real Mosquitto with a TLS listener, the consumers
(wire and paho) and the simulators' publisher and recorder with ``[mqtt]`` ca_file, cert_file,
key_file and server_name, and the settings' checks of those files."""

from __future__ import annotations

import logging
import uuid

import paho.mqtt.publish as paho_publish
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from citywatch.settings import ConfigError, load_settings
from ingest.mqtt import ConsumerOptions, MqttConsumer, MqttError, TlsOptions
from ingest.wire import WireConsumer
from simulators.errors import BrokerError
from simulators.mqtt import BrokerURL, Publisher
from tests.support.certs import CA
from tests.support.mosquitto import Mosquitto, TlsListener
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

SERVER_NAME = "broker.test"  # the only names in the server certificate: connecting by IP needs server_name


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d, "city")
    other = CA(d, "other")  # a CA the consumer does not trust
    return {"ca": ca, "other": other, "server": ca.issue("server", dns=(SERVER_NAME, "localhost"), ips=()),
            "client": ca.issue("ingest", server=False), "stranger": other.issue("stranger", server=False),
            "fake": other.issue("fake", dns=(SERVER_NAME, "localhost"), ips=())}


@pytest.fixture(scope="module")
def tls_broker(pki, tmp_path_factory):
    s = pki["server"]
    b = Mosquitto(tmp_path_factory.mktemp("mq-tls"), tls=TlsListener(s.cert, s.key, pki["ca"].cert)).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def mtls_broker(pki, tmp_path_factory):
    """Requires a client certificate signed by the city CA."""
    s = pki["server"]
    b = Mosquitto(tmp_path_factory.mktemp("mq-mtls"),
                  tls=TlsListener(s.cert, s.key, pki["ca"].cert, require_certificate=True)).start()
    yield b
    b.stop()


@pytest.fixture
def topic() -> str:
    return f"tlstest/{uuid.uuid4().hex[:8]}"


class Received:
    def __init__(self):
        self.payloads: list[bytes] = []

    def __call__(self, topic, payload, ack):
        self.payloads.append(payload)
        if ack is not None:
            ack()


def publish_plain(broker: Mosquitto, topic: str, payloads: list[bytes]) -> None:
    paho_publish.multiple([{"topic": topic, "payload": p, "qos": 1} for p in payloads], hostname="127.0.0.1",
                          port=broker.port, protocol=MQTTProtocolVersion.MQTTv311)


def consumer(kind: str, url: str, topic: str, tls: TlsOptions, got, protocol: int = 5):
    opts = ConsumerOptions(client_id=f"tls-{uuid.uuid4().hex[:8]}", topics=[f"{topic}/#"], protocol=protocol, tls=tls)
    return WireConsumer(url, got, opts) if kind == "wire" else MqttConsumer(url, got, opts)


@pytest.mark.parametrize("kind", ["wire", "paho"])
def test_consumer_trusts_ca_file_and_receives(pki, tls_broker, topic, kind):
    got = Received()
    c = consumer(kind, tls_broker.tls_url, topic, TlsOptions(ca_file=pki["ca"].cert), got)
    c.start(5)
    try:
        assert c.subscribed.wait(5)
        big = b"z" * 100_000  # spans several TLS records
        publish_plain(tls_broker, f"{topic}/m", [b"over tls", big])
        assert wait_for(lambda: got.payloads == [b"over tls", big], 5)
    finally:
        c.stop()


@pytest.mark.parametrize("kind", ["wire", "paho"])
def test_server_name_verifies_a_broker_reached_by_ip(pki, tls_broker, topic, kind):
    """The certificate names broker.test and localhost only: by IP the host name check fails,
    with server_name = broker.test it passes."""
    url = f"mqtts://127.0.0.1:{tls_broker.tls_port}"
    by_ip = consumer(kind, url, topic, TlsOptions(ca_file=pki["ca"].cert), Received())
    with pytest.raises(MqttError, match="IP address mismatch|doesn't match|CERTIFICATE_VERIFY_FAILED"):
        by_ip.start(2)
    got = Received()
    c = consumer(kind, url, topic, TlsOptions(ca_file=pki["ca"].cert, server_name=SERVER_NAME), got)
    c.start(5)
    try:
        assert c.subscribed.wait(5)
        publish_plain(tls_broker, f"{topic}/m", [b"by ip"])
        assert wait_for(lambda: got.payloads == [b"by ip"], 5)
    finally:
        c.stop()


@pytest.mark.parametrize("kind", ["wire", "paho"])
def test_client_certificate_when_the_broker_requires_one(pki, mtls_broker, topic, kind):
    ca = pki["ca"].cert
    if kind == "wire":
        without = consumer(kind, mtls_broker.tls_url, topic, TlsOptions(ca_file=ca), Received())
        with pytest.raises(MqttError):
            without.start(3)
        assert not without.connected.is_set()
        stranger = pki["stranger"]  # a client certificate from a CA the broker does not trust
        wrong = consumer(kind, mtls_broker.tls_url, topic,
                         TlsOptions(ca_file=ca, cert_file=stranger.cert, key_file=stranger.key), Received())
        with pytest.raises(MqttError):
            wrong.start(3)
    cl = pki["client"]
    got = Received()
    c = consumer(kind, mtls_broker.tls_url, topic, TlsOptions(ca_file=ca, cert_file=cl.cert, key_file=cl.key), got)
    c.start(5)
    try:
        assert c.subscribed.wait(5)
        publish_plain(mtls_broker, f"{topic}/m", [b"mutual"])
        assert wait_for(lambda: got.payloads == [b"mutual"], 5)
    finally:
        c.stop()


def test_wire_refuses_a_server_certificate_from_another_ca(pki, tmp_path, topic, caplog):
    """A broker presenting a certificate for the right name but from another CA: the consumer
    never connects, start() raises naming the certificate problem, and the log says it at ERROR."""
    fake = pki["fake"]
    impostor = Mosquitto(tmp_path / "mq", tls=TlsListener(fake.cert, fake.key, pki["other"].cert)).start()
    try:
        c = consumer("wire", impostor.tls_url, topic, TlsOptions(ca_file=pki["ca"].cert), Received())
        with caplog.at_level(logging.ERROR, logger="citywatch.mqtt.wire"):
            with pytest.raises(MqttError, match="CERTIFICATE_VERIFY_FAILED"):
                c.start(3)
        assert not c.connected.is_set()
        assert any("certificate verify failed" in r.getMessage() and r.levelno == logging.ERROR
                   for r in caplog.records)
    finally:
        impostor.stop()


def test_paho_refuses_a_server_certificate_from_another_ca(pki, tmp_path, topic, caplog):
    fake = pki["fake"]
    impostor = Mosquitto(tmp_path / "mq", tls=TlsListener(fake.cert, fake.key, pki["other"].cert)).start()
    try:
        c = consumer("paho", impostor.tls_url, topic, TlsOptions(ca_file=pki["ca"].cert), Received())
        with caplog.at_level(logging.ERROR, logger="citywatch.mqtt"):
            with pytest.raises(MqttError, match="CERTIFICATE_VERIFY_FAILED"):
                c.start(2)
        assert not c.connected.is_set()
        assert any("certificate verify failed" in r.getMessage() for r in caplog.records)
    finally:
        impostor.stop()


def test_simulator_publisher_and_recorder_over_tls(pki, mtls_broker, topic, tmp_path):
    from simulators.record import read, record

    cl = pki["client"]
    b = BrokerURL.parse(mtls_broker.tls_url).with_tls(ca_file=pki["ca"].cert, cert_file=cl.cert, key_file=cl.key)
    got = Received()
    c = consumer("wire", mtls_broker.tls_url, topic,
                 TlsOptions(ca_file=pki["ca"].cert, cert_file=cl.cert, key_file=cl.key), got)
    c.start(5)
    try:
        assert c.subscribed.wait(5)
        with Publisher(b) as pub:
            for i in range(50):
                pub.publish(f"{topic}/m", str(i).encode(), qos=1)
        assert wait_for(lambda: len(got.payloads) == 50, 5)
        assert got.payloads == [str(i).encode() for i in range(50)]
    finally:
        c.stop()
    import threading

    out = tmp_path / "rec.cwrec"
    done = threading.Event()
    rec = threading.Thread(target=lambda: (record(b, out, topics=(f"{topic}/#",), count=3, duration_s=10),
                                           done.set()))
    rec.start()
    try:
        # the recorder subscribes after connecting: publish until it has its three messages
        assert wait_for(lambda: (publish_plain(mtls_broker, f"{topic}/r", [b"r"]) or done.is_set()), 10, 0.2)
    finally:
        rec.join(15)
    assert [r.payload for r in read(out)] == [b"r"] * 3
    untrusted = BrokerURL.parse(mtls_broker.tls_url).with_tls(cert_file=cl.cert, key_file=cl.key)  # system store
    with pytest.raises(BrokerError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        Publisher(untrusted, timeout_s=2)


# -- settings ------------------------------------------------------------------------------------

def settings_with(tmp_path, **mqtt) -> None:
    lines = [f'{k} = "{v}"' for k, v in mqtt.items()]
    path = tmp_path / "citywatch.toml"
    path.write_text("[mqtt]\n" + "\n".join(lines) + "\n")
    return load_settings(path, env={})


def test_settings_accept_good_tls_files(pki, tmp_path):
    cl = pki["client"]
    s = settings_with(tmp_path, url="mqtts://10.0.0.5", ca_file=pki["ca"].cert, cert_file=cl.cert,
                      key_file=cl.key, server_name=SERVER_NAME)
    assert s.mqtt.tls_options() == TlsOptions(pki["ca"].cert, cl.cert, cl.key, SERVER_NAME)
    assert settings_with(tmp_path, url="mqtts://h").mqtt.tls_options() == TlsOptions()  # the system store


@pytest.mark.parametrize("case, key, message", [
    ("missing ca", "mqtt.ca_file", "no such file"),
    ("ca not a certificate", "mqtt.ca_file", "no usable CA certificate"),
    ("cert without key", "mqtt.key_file", "private key file is needed"),
    ("key without cert", "mqtt.key_file", "a key without cert_file"),
    ("key of another cert", "mqtt.key_file", "is not the private key of cert_file"),
    ("missing cert", "mqtt.cert_file", "no such file"),
    ("plain url", "mqtt.ca_file", "need an mqtts:// url"),
])
def test_settings_refuse_bad_tls_files(pki, tmp_path, case, key, message):
    cl, other = pki["client"], pki["stranger"]
    url = "mqtts://h"
    kw = {
        "missing ca": {"ca_file": str(tmp_path / "nope.crt")},
        "ca not a certificate": {"ca_file": cl.key},
        "cert without key": {"cert_file": cl.cert},
        "key without cert": {"key_file": cl.key},
        "key of another cert": {"cert_file": cl.cert, "key_file": other.key},
        "missing cert": {"cert_file": str(tmp_path / "nope.crt"), "key_file": cl.key},
        "plain url": {"ca_file": pki["ca"].cert},
    }[case]
    if case == "plain url":
        url = "mqtt://h"
    with pytest.raises(ConfigError) as e:
        settings_with(tmp_path, url=url, **kw)
    assert f"{key}: " in str(e.value) and message in str(e.value)


def test_simulate_and_replay_commands_use_the_config_tls_keys(pki, mtls_broker, tmp_path):
    """``citywatch simulate``/``replay --config``: the [mqtt] url and TLS keys of the config."""
    import time

    from typer.testing import CliRunner

    from citywatch.cli import app
    from simulators.record import Writer

    cl = pki["client"]
    cfg = tmp_path / "citywatch.toml"
    cfg.write_text(f'[mqtt]\nurl = "mqtts://127.0.0.1:{mtls_broker.tls_port}"\nca_file = "{pki["ca"].cert}"\n'
                   f'cert_file = "{cl.cert}"\nkey_file = "{cl.key}"\nserver_name = "{SERVER_NAME}"\n')
    got = Received()
    c = consumer("wire", mtls_broker.tls_url, "city", TlsOptions(ca_file=pki["ca"].cert, cert_file=cl.cert,
                                                                  key_file=cl.key), got)
    c.start(5)
    try:
        assert c.subscribed.wait(5)
        start = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 3600))
        r = CliRunner().invoke(app, ["simulate", "--kinds", "noise", "--devices", "3", "--duration", "10m",
                                     "--start", start, "--speed", "max", "--config", str(cfg)])
        assert r.exit_code == 0, r.output
        assert wait_for(lambda: len(got.payloads) > 0, 5)
        n = len(got.payloads)
        rec = tmp_path / "r.cwrec"
        w = Writer(rec)
        w.write(int(time.time() * 1000), "city/noise/x/status", b"online", 1, False)
        w.close()
        r = CliRunner().invoke(app, ["replay", str(rec), "--speed", "max", "--config", str(cfg)])
        assert r.exit_code == 0, r.output
        assert wait_for(lambda: len(got.payloads) == n + 1 and got.payloads[-1] == b"online", 5)
    finally:
        c.stop()
    bad = tmp_path / "bad.toml"  # without the client certificate the broker refuses the simulator
    bad.write_text(f'[mqtt]\nurl = "mqtts://localhost:{mtls_broker.tls_port}"\nca_file = "{pki["ca"].cert}"\n')
    r = CliRunner().invoke(app, ["simulate", "--kinds", "noise", "--devices", "1", "--duration", "1m",
                                 "--speed", "max", "--config", str(bad)])
    assert r.exit_code == 2 and "closed the connection before answering CONNECT" in r.output, r.output
