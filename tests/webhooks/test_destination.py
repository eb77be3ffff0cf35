"""The allow-list check on its own, with hostile input: no connection is made (the resolver is
the test's), so nothing leaves this process."""

from __future__ import annotations

import pytest

from memvault.config import Settings
from memvault.errors import DestinationRefused, InvalidConfig
from memvault.webhooks import AllowList, check_addresses, check_destination, parse_url

PUBLIC = "93.184.215.14"
ALLOW = AllowList.parse(["hooks.example.com", "*.partner.example", "10.20.0.0/16"])


def resolver_of(*addresses: str):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


def test_a_listed_name_with_public_addresses_passes() -> None:
    found = check_destination("https://hooks.example.com/in", ALLOW, resolver_of(PUBLIC))
    assert found.address == PUBLIC and found.target.host == "hooks.example.com"
    sub = check_destination("https://a.b.partner.example:8443/x", ALLOW, resolver_of(PUBLIC))
    assert (sub.target.port, sub.target.host_header) == (8443, "a.b.partner.example:8443")
    inside = check_destination("https://internal.corp/x", ALLOW, resolver_of("10.20.3.4"))
    assert inside.address == "10.20.3.4"  # every address inside a listed network


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",  # private, outside the listed 10.20/16
        "192.168.1.1",
        "172.16.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "169.254.169.254",  # cloud metadata
        "169.254.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "::",
    ],
)
def test_a_listed_name_resolving_to_a_special_address_is_refused(address: str) -> None:
    with pytest.raises(DestinationRefused):
        check_destination("https://hooks.example.com/", ALLOW, resolver_of(address))


def test_one_bad_address_among_good_ones_refuses() -> None:
    with pytest.raises(DestinationRefused):
        check_destination("https://hooks.example.com/", ALLOW, resolver_of(PUBLIC, "127.0.0.1"))


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.net/",  # not listed
        "https://example.com/",  # the parent of a listed name
        "https://partner.example/",  # *.partner.example is its subdomains only
        "https://hooks.example.com.evil.net/",
        "https://hooks.example.com@evil.net/",  # user info
        "https://evil.net#@hooks.example.com/",
        "https://evil.net\\@hooks.example.com/",
        "https://evil.net?@hooks.example.com/",
        "http://hooks.example.com/",  # http is off here
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "https://hooks.example.com:0/",
        "https://hooks.example.com:99999/",
        "https:///nohost",
        "https://hooks .example.com/",
        "https://hooks.example.com/\r\nX-Injected: 1",
        "https://2130706433/",  # 127.0.0.1 in decimal
        "https://0177.0.0.1/",  # octal
        "https://0x7f.0.0.1/",  # hex
        "https://0x7f000001/",
        "https://127.1/",
        "https://127.0.0.1/",  # an address literal outside the listed networks
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fe80::1%25eth0]/",
        "https://169.254.169.254/latest/meta-data/",
        "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",  # fullwidth digits: IDNA makes them 127.0.0.1
        "https://hooks.ex\u0430mple.com/",  # Cyrillic a: another name (xn--), not listed
        "https://" + "a" * 2100 + ".example.com/",
        "https://hooks.example.com/caf\u00e9",  # a path that is not ASCII
        "",
    ],
)
def test_hostile_urls_are_refused(url: str) -> None:
    # Any address would do for the names: refusals come before or regardless of it.
    with pytest.raises(DestinationRefused):
        check_destination(url, ALLOW, resolver_of(PUBLIC))


def test_idn_names_are_compared_in_ascii() -> None:
    allow = AllowList.parse(["xn--bcher-kva.example"])
    found = check_destination("https://Bücher.example/hook", allow, resolver_of(PUBLIC))
    assert found.target.host == "xn--bcher-kva.example"


def test_metadata_passes_only_when_listed_alone() -> None:
    target = parse_url("https://169.254.169.254/", ALLOW)
    broad = AllowList.parse(["169.254.0.0/16"])
    with pytest.raises(DestinationRefused):
        check_addresses(target, ["169.254.169.254"], broad)
    exact = AllowList.parse(["169.254.169.254/32"])
    assert check_addresses(target, ["169.254.169.254"], exact) == "169.254.169.254"


def test_loopback_only_when_its_network_is_listed() -> None:
    allow = AllowList.parse(["127.0.0.1/32"], allow_http=True)
    found = check_destination("http://127.0.0.1:8080/hook", allow, resolver_of())
    assert (found.address, found.target.path) == ("127.0.0.1", "/hook")
    with pytest.raises(DestinationRefused):  # a name resolving there is not listed itself...
        check_destination(
            "http://localhost:8080/",
            AllowList.parse(["localhost"], allow_http=True),
            resolver_of("127.0.0.1"),
        )
    # ...but passes once the network is
    both = AllowList.parse(["localhost", "127.0.0.0/8"], allow_http=True)
    assert check_destination("http://localhost/", both, resolver_of("127.0.0.1")).address


def test_an_empty_allow_list_refuses_everything() -> None:
    with pytest.raises(DestinationRefused):
        check_destination("https://hooks.example.com/", AllowList(), resolver_of(PUBLIC))


def test_no_address_is_refused() -> None:
    with pytest.raises(DestinationRefused):
        check_destination("https://hooks.example.com/", ALLOW, resolver_of())


@pytest.mark.parametrize("entry", ["", "not a host!", "10.0.0.1/8", "2130706433", "*.", "a..b"])
def test_bad_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(InvalidConfig):
        AllowList.parse([entry])


def test_settings_refuse_a_bad_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidConfig):
        Settings.load(webhook_allowed_hosts=["hooks.example.com", "not a host!"])
    monkeypatch.setenv("MEMVAULT_WEBHOOK_ALLOWED_HOSTS", '["*.example.com", "10.0.0.0/8"]')
    assert Settings.load().webhook_allowed_hosts == ["*.example.com", "10.0.0.0/8"]
