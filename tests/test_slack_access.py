"""Slack membership, cached: a TTL that expires, a bound that evicts, and invalidation (fake Slack Web API)."""

from __future__ import annotations

import time

from slack_sdk import WebClient

from frontends.slack.access import MembershipCache, scope_for
from tests.fakes.slack_api import BOT_TOKEN, SlackAPIServer


def test_membership_is_cached_for_its_ttl_bounded_and_invalidated():
    with SlackAPIServer() as slack:
        slack.add_channel("C_A", ["U1", "U2"])
        slack.add_channel("C_B", ["U2"])
        client = WebClient(token=BOT_TOKEN, base_url=slack.base_url + "/api/")
        cache = MembershipCache(client, ttl_s=0.5, max_users=2)

        assert cache.channels_of("U2") == {"C_A", "C_B"}
        assert cache.channels_of("U2") == {"C_A", "C_B"}
        assert len(slack.calls_to("users.conversations")) == 1  # the second answer came from the cache

        cache.channels_of("U1")
        cache.channels_of("U3")  # a third user: the bound evicts the oldest
        assert len(cache) == 2
        cache.channels_of("U2")
        assert len(slack.calls_to("users.conversations")) == 4  # U2 was evicted and fetched again

        slack.add_channel("C_C", ["U2"])
        assert cache.channels_of("U2") == {"C_A", "C_B"}  # still cached
        time.sleep(0.6)
        assert cache.channels_of("U2") == {"C_A", "C_B", "C_C"}  # expired: fetched again
        cache.invalidate()
        assert len(cache) == 0


def test_a_dm_scope_is_the_users_channels_and_a_channel_scope_only_that_channel():
    with SlackAPIServer() as slack:
        slack.add_channel("C_A", ["U1"])
        slack.add_channel("C_B", ["U1"])
        cache = MembershipCache(WebClient(token=BOT_TOKEN, base_url=slack.base_url + "/api/"))
        assert set(scope_for(cache, user_id="U1", channel_id="D1", is_direct_message=True)) == {
            "C_A",
            "C_B",
            "public",
        }
        assert set(scope_for(cache, user_id="U1", channel_id="C_A", is_direct_message=False)) == {
            "C_A",
            "public",
        }
