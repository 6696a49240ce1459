"""Sending rates: parsing `N/unit` and per-domain limits, and the pace they set (a fake clock)."""

from __future__ import annotations

import pytest

from newsroom.errors import ConfigError
from newsroom.mail.ratelimit import RateLimiter, domain_rates, per_second
from newsroom.site import Site


def test_rates_parse() -> None:
    assert per_second("600/minute") == 10.0
    assert per_second(" 2 / second ") == 2.0
    assert per_second("3600/hour") == 1.0
    assert domain_rates("gmail.com=60/minute, Outlook.com=1/second") == {
        "gmail.com": 1.0,
        "outlook.com": 1.0,
    }
    assert domain_rates("") == {}


@pytest.mark.parametrize("bad", ["600", "0/minute", "ten/minute", "5/day"])
def test_bad_rates_name_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"sending.rate: .* must look like 600/minute"):
        per_second(bad)


def test_bad_domain_rate_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="sending.domain_rates: 'gmail.com' must look like"):
        domain_rates("gmail.com")


def test_pace_overall_and_per_domain() -> None:
    now = [100.0]
    limiter = RateLimiter(10.0, {"gmail.com": 1.0}, clock=lambda: now[0])
    assert limiter.delay("a@example.org") == 0.0
    assert limiter.delay("b@example.org") == pytest.approx(0.1)
    assert limiter.delay("c@example.org") == pytest.approx(0.2)
    now[0] = 200.0  # idle for a while: no burst is saved up beyond one message
    assert limiter.delay("a@gmail.com") == 0.0
    assert limiter.delay("b@GMAIL.com") == pytest.approx(1.0)
    assert limiter.delay("c@example.org") == pytest.approx(0.2)


def test_processes_sending_together_each_keep_to_their_part(site: Site) -> None:
    site.config._values.update(
        {"sending.rate": "600/minute", "sending.domain_rates": "gmail.com=60/minute"}
    )
    whole, third = RateLimiter.from_config(site.config), RateLimiter.from_config(site.config, 3)
    assert (whole.overall.interval, third.overall.interval) == pytest.approx((0.1, 0.3))
    assert third.domains["gmail.com"].interval == pytest.approx(3.0)
