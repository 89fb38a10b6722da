"""ReadingsBuilder: the ways in keep message order, and a message's rows share its strings."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.model import ReadingsBuilder


def test_messages_and_single_readings_keep_their_order_and_tags():
    b = ReadingsBuilder()
    b.add("n-1", "noise", "laeq_db", 10, 50.0, "江汉区", "")
    b.add_message("n-2", "noise", 11, ("laeq_db", "lmax_db", "pm10_ugm3"), (51, 60.5, 88), "江岸区", "site-2")
    b.add("n-1", "noise", "lmax_db", 12, 61.0, "江汉区", "")
    b.add_message("n-3", "noise", 13, (), (), "江汉区", "")  # no metrics: no rows
    assert len(b) == 5
    r = b.build()
    assert list(r.device_id) == ["n-1", "n-2", "n-2", "n-2", "n-1"]
    assert list(r.metric) == ["laeq_db", "laeq_db", "lmax_db", "pm10_ugm3", "lmax_db"]
    assert list(r.ts) == [10, 11, 11, 11, 12] and r.ts.dtype == np.int64
    assert list(r.value) == [50.0, 51.0, 60.5, 88.0, 61.0] and r.value.dtype == np.float64
    assert list(r.district) == ["江汉区", "江岸区", "江岸区", "江岸区", "江汉区"]
    assert list(r.asset_id) == ["", "site-2", "site-2", "site-2", ""]
    assert r.device_id.dtype == object and r.metric.dtype == object
    # one object per message: the stores and the rule engine find runs by identity
    assert r.device_id[1] is r.device_id[2] is r.device_id[3]


def test_a_message_with_more_metrics_than_values_is_refused():
    with pytest.raises(ValueError, match="2 metrics, 1 values"):
        ReadingsBuilder().add_message("n-1", "noise", 1, ("a", "b"), (1.0,))


def test_an_empty_builder_builds_an_empty_batch():
    r = ReadingsBuilder().build()
    assert len(r) == 0 and r.ts.dtype == np.int64
