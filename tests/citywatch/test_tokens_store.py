"""The API tokens' table (citywatch/api/tokens.py) on both engines of the state DB: created once
and found by another connection (the command line's and serve's), unique active names, revoked,
last use kept as the newest."""

from __future__ import annotations

import pytest

from citywatch.api.tokens import TokenError, TokenStore, split
from devices.db import parse_url


class Clock:
    ms = 1_764_403_200_000

    def __call__(self) -> int:
        return self.ms


def test_tokens_on_both_engines(state_url):
    clock = Clock()
    cli = TokenStore(parse_url(state_url), clock=clock)
    serve = TokenStore(parse_url(state_url), clock=clock, recheck_s=0.0)
    try:
        record, text = cli.create("值班", "operator", ["江汉区", "武昌区"])
        found = serve.identify(text)  # made by another connection: known at once
        assert (found.id, found.name, found.role) == (record.id, "值班", "operator")
        assert found.districts == ("江汉区", "武昌区")
        assert len(found.hash) == 64 and split(text)[1] not in found.hash
        assert serve.identify(text[:-1] + ("A" if text[-1] != "A" else "B")) is None
        with pytest.raises(TokenError, match="a token named '值班' exists"):
            cli.create("值班", "viewer")
        # last use: written once due, never moved back by an older one
        serve.flush_used()
        assert cli.get(record.id).last_used_ms == clock.ms
        serve._used[record.id] = clock.ms - 5_000
        serve.flush_used()
        assert cli.get(record.id).last_used_ms == clock.ms
        clock.ms += 120_000
        serve.identify(text)
        serve.flush_used()
        assert cli.get(record.id).last_used_ms == clock.ms
        revoked = cli.revoke("值班")
        assert revoked.revoked_ms == clock.ms and serve.identify(text) is None
        with pytest.raises(TokenError, match="already revoked"):
            cli.revoke(record.id)
        again, _ = cli.create("值班", "admin")  # the name is free again
        assert [t.name for t in cli.list()] == ["值班", "值班"] and cli.count_active() == 1
        assert again.id != record.id
    finally:
        cli.close()
        serve.close()
