"""Session services: a real Mosquitto (and influxd for the store tests) on free loopback ports."""

from __future__ import annotations

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()
