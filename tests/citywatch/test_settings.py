"""Config errors name the key; the environment overrides the file (operator.md)."""

from __future__ import annotations

import pytest

from citywatch.settings import ConfigError, load_settings


def write(tmp_path, text: str):
    p = tmp_path / "citywatch.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.timezone == "Asia/Shanghai"
    assert s.store.url.startswith("duckdb:///citywatch-data/")
    assert s.state.url.startswith("sqlite:///citywatch-data/")
    assert s.mqtt.topics == ["city/#"]


def test_environment_overrides_file(tmp_path):
    p = write(tmp_path, '[mqtt]\nurl = "mqtt://10.0.0.1:1883"\nclient_id = "a"\n[api]\nlisten = "127.0.0.1:9000"\n')
    s = load_settings(p, env={"CITYWATCH_MQTT_URL": "mqtt://127.0.0.1:1999", "CITYWATCH_API_LISTEN": "127.0.0.1:9100",
                              "CITYWATCH_MQTT_CLIENT_ID": "b", "CITYWATCH_TIMEZONE": "UTC"})
    assert s.mqtt.url == "mqtt://127.0.0.1:1999" and s.mqtt.client_id == "b"
    assert s.api.port == 9100 and s.timezone == "UTC"


def test_config_named_by_environment(tmp_path):
    p = write(tmp_path, 'timezone = "UTC"\n')
    assert load_settings(env={"CITYWATCH_CONFIG": str(p)}).timezone == "UTC"


@pytest.mark.parametrize("text,env,key", [
    ("[mqtt]\nurll = 'x'\n", {}, "mqtt.urll: unknown key"),
    ("colour = 'red'\n", {}, "colour: unknown key"),
    ("[mqtt]\nurl = 'http://broker'\n", {}, "mqtt.url: expected mqtt:// or mqtts://"),
    ("[store]\nurl = 'postgres://x'\n", {}, "store.url: expected duckdb"),
    ("[state]\nurl = 'state.db'\n", {}, "state.url: expected sqlite"),
    ("[api]\nlisten = 'localhost'\n", {}, "api.listen: expected host:port"),
    ("[api]\nopen = 'maybe'\n", {}, "api.open: Input should be a valid boolean"),
    ("timezone = 'Mars/Olympus'\n", {}, "timezone: unknown time zone"),
    ("[mqtt]\nqos = 'high'\n", {}, "mqtt.qos:"),
    ("[mqtt]\ntopics = ['city/#/x']\n", {}, "mqtt.topics: "),
    ("", {"CITYWATCH_MQTT_URLL": "x"}, "CITYWATCH_MQTT_URLL: unknown setting"),
    ("", {"CITYWATCH_INGEST_LINGER_MS": "soon"}, "ingest.linger_ms:"),
    ("[ingest]\nwrite_linger_ms = -1\n", {}, "ingest.write_linger_ms:"),
    ("[ingest]\npriority_wait_ms = 5000\n", {}, "ingest.priority_wait_ms:"),
    ("[[routes]]\nreceivers = ['nowhere']\n", {}, "routes[0].receivers: unknown receiver 'nowhere'"),
    ("[[receivers]]\nname = 'a'\nurl = 'ftp://x'\nsecret = 's'\n", {}, "receivers[0].url"),
    ("[mqtt\n", {}, "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, env, key):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_settings(p, env=env)
    assert key in str(e.value), str(e.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "nope.toml", env={})
