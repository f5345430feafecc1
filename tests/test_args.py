"""Guest arguments arrive byte for byte (property-based)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmrpc.pytest_plugin import VmFactory

# Any text the console can carry back unambiguously: no NUL (C strings), no newline
# (the guest prints one argument per line), no lone surrogates (not encodable).
guest_arg = st.text(
    alphabet=st.characters(exclude_characters="\x00\n", exclude_categories=("Cs",)),
    max_size=40,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(args=st.lists(guest_arg, max_size=6))
def test_args_round_trip(vm_factory: VmFactory, args: list[str]) -> None:
    vm = vm_factory("hello", args=args)

    assert vm.run() == 0

    lines = vm.console.split("\n")
    for index, arg in enumerate(args, start=1):
        assert f"arg[{index}]={arg}" in lines
    vm.close()
