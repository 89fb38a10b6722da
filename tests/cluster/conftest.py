"""The cluster fault tests get a Mosquitto of their own: their streams (100,000 messages) would
otherwise be queued in every persistent session other tests left on the session's broker."""

from __future__ import annotations

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture(scope="module")
def cluster_broker(tmp_path_factory):
    broker = Mosquitto(tmp_path_factory.mktemp("cluster-mosquitto")).start()
    yield broker
    broker.stop()
