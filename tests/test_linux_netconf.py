"""vmrpc.linux.netconf: the /etc a Linux program with a network gets."""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrpc.linux.netconf import RESOLVER, write_etc


def test_files_name_the_vms_resolver_and_the_callers_hosts(tmp_path: Path) -> None:
    write_etc(tmp_path, {"api.test": "10.1.2.3", "v6.test": "::2"})
    assert (tmp_path / "resolv.conf").read_text().splitlines()[0] == f"nameserver {RESOLVER}"
    assert (tmp_path / "nsswitch.conf").read_text() == "hosts: files dns\n"
    hosts = (tmp_path / "hosts").read_text().splitlines()
    assert hosts[0] == "127.0.0.1\tlocalhost"
    assert hosts[2:] == ["10.1.2.3\tapi.test", "::2\tv6.test"]


@pytest.mark.parametrize(
    ("name", "address", "error"),
    [
        ("evil\n1.2.3.4 bank.test", "127.0.0.1", "not a host name"),  # a smuggled line
        ("a b", "127.0.0.1", "not a host name"),
        ("", "127.0.0.1", "not a host name"),
        ("x" * 254, "127.0.0.1", "not a host name"),
        ("ok.test", "127.0.0.1 extra", "does not appear to be an IPv4 or IPv6 address"),
        ("ok.test", "not-an-address", "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_bad_entries_are_refused(tmp_path: Path, name: str, address: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        write_etc(tmp_path, {name: address})


@given(st.text(max_size=40), st.text(max_size=40))
def test_an_entry_is_one_line_or_refused(name: str, address: str) -> None:
    """Whatever the caller passes, the file gets exactly its own line or nothing."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            write_etc(Path(directory), {name: address})
        except ValueError:
            return
        line = (Path(directory) / "hosts").read_text().splitlines()[2]
    got_address, got_name = line.split("\t")
    assert got_name == name
    assert ipaddress.ip_address(got_address) == ipaddress.ip_address(address)
