"""User-written guests: vmrpc.guest.build, ``vmrpc build-guest`` and the shipped SDK."""

from __future__ import annotations

import logging
import math
import os
import random
import re
import stat
import string
import struct
import subprocess
from pathlib import Path

import pytest

import vmrpc.guest
from vmrpc import GuestBuildError, NativeModule, VmrpcError
from vmrpc.pytest_plugin import VmFactory

from conftest import run_python

# Everything from the one header: console, strings, heap, RPC, exit code from main.
APP_C = """\
#include <vmrpc.h>
#include "app.h"

int main(int argc, char **argv)
{
	char resp[64];
	char *copy = malloc(32);
	int echo = bind_module("echo", VMRPC_VERSION(1, 0));
	long n;

	if (echo < 0 || !copy)
		return 10;
	strcpy(copy, argc > 1 ? argv[1] : "none");
	n = perform_rpc(echo, 0, copy, strlen(copy), resp, sizeof(resp) - 1);
	if (n < 0)
		return 11;
	resp[n] = '\\0';
	printf("%s: echoed %s\\n", GREETING, resp);
	return ANSWER;
}
"""

APP_H = '#define GREETING "user guest"\n'

HELPER_C = """\
int twice(int x)
{
	return 2 * x;
}
"""

MAIN_C = """\
#include <vmrpc.h>

int twice(int x);

int main(void)
{
	printf("twice(21)=%d\\n", twice(21));
	return twice(2);
}
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app.h").write_text(APP_H)
    source = tmp_path / "app.c"
    source.write_text(APP_C)
    return source


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def counting_cc(tmp_path: Path) -> tuple[str, Path]:
    """A compiler wrapper that logs each run to a file, then runs gcc."""
    log = tmp_path / "cc.log"
    script = tmp_path / "counting-cc"
    script.write_text(f'#!/bin/sh\necho run >> "{log}"\nexec gcc "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def vmrpc_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "vmrpc", *args, cwd=cwd)


def test_build_and_run_a_user_guest(vm_factory: VmFactory, app: Path, cache: Path) -> None:
    elf = vmrpc.guest.build(app, cflags=["-DANSWER=42"], cache_dir=cache)

    vm = vm_factory(elf, args=["ping"], modules=[NativeModule("echo")])
    assert vm.run() == 42, vm.console
    assert "user guest: echoed ping" in vm.console


def test_several_sources_are_linked(vm_factory: VmFactory, tmp_path: Path, cache: Path) -> None:
    (tmp_path / "helper.c").write_text(HELPER_C)
    (tmp_path / "main.c").write_text(MAIN_C)
    out = tmp_path / "out" / "two.elf"

    elf = vmrpc.guest.build([tmp_path / "main.c", tmp_path / "helper.c"], out, cache_dir=cache)

    assert elf == out
    vm = vm_factory(elf)
    assert vm.run() == 4
    assert "twice(21)=42" in vm.console


def test_build_guest_command(vm_factory: VmFactory, app: Path, cache: Path) -> None:
    result = vmrpc_cli(
        "build-guest", "app.c", "--cflags=-DANSWER=7", "--cache-dir", str(cache), cwd=app.parent
    )

    assert result.returncode == 0, result.stderr
    elf = app.parent / "app.elf"  # default output: the first source's name, here
    assert result.stdout.strip() == "app.elf"
    vm = vm_factory(elf, args=["cli"], modules=[NativeModule("echo")])
    assert vm.run() == 7, vm.console


def test_syntax_error_gives_the_compilers_message(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("#include <vmrpc.h>\n\nint main(void)\n{\n\treturn 0\n}\n")

    with pytest.raises(GuestBuildError) as info:
        vmrpc.guest.build(source, cache_dir=cache)

    message = str(info.value)
    assert "broken.c:5" in message
    assert re.search("error: expected .;. before", message)  # quotes depend on the locale
    assert info.value.stderr in message
    assert info.value.command is not None
    assert isinstance(info.value, VmrpcError)


def test_syntax_error_from_the_command_line(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "broken.c").write_text("int main(void) { return undefined_name; }\n")

    result = vmrpc_cli("build-guest", "broken.c", "--cache-dir", str(cache), cwd=tmp_path)

    assert result.returncode == 1
    assert "undefined_name" in result.stderr
    assert "error:" in result.stderr
    assert not (tmp_path / "broken.elf").exists()


def test_missing_compiler(monkeypatch: pytest.MonkeyPatch, app: Path, cache: Path) -> None:
    monkeypatch.setenv("CC", "/nonexistent")

    with pytest.raises(GuestBuildError, match=r"no C compiler: CC='/nonexistent'"):
        vmrpc.guest.build(app, cache_dir=cache)


def test_no_compiler_on_path(monkeypatch: pytest.MonkeyPatch, app: Path, cache: Path) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(app.parent))

    with pytest.raises(GuestBuildError, match="no C compiler found"):
        vmrpc.guest.build(app, cache_dir=cache)


def test_missing_source(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(GuestBuildError, match="not found"):
        vmrpc.guest.build(tmp_path / "nope.c", cache_dir=cache)


def test_second_build_is_a_cache_hit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app: Path, cache: Path
) -> None:
    cc, log = counting_cc(tmp_path)
    monkeypatch.setenv("CC", cc)
    flags = ["-DANSWER=1"]

    first = vmrpc.guest.build(app, cflags=flags, cache_dir=cache)
    built = runs(log)
    mtime = first.stat().st_mtime_ns
    second = vmrpc.guest.build(app, cflags=flags, cache_dir=cache)

    assert built == 3  # -print-file-name=include, compile, link
    assert second == first
    assert runs(log) == built  # the compiler did not run again
    assert second.stat().st_mtime_ns == mtime

    # Other flags, a changed source or a changed local header each rebuild.
    vmrpc.guest.build(app, cflags=["-DANSWER=2"], cache_dir=cache)
    assert runs(log) == 6
    (app.parent / "app.h").write_text('#define GREETING "changed"\n')
    third = vmrpc.guest.build(app, cflags=flags, cache_dir=cache)
    assert runs(log) == 9
    assert third == first  # same key (the source did not change), rebuilt in place
    app.write_text(APP_C.replace("malloc(32)", "malloc(64)"))
    assert vmrpc.guest.build(app, cflags=flags, cache_dir=cache) != first
    assert runs(log) == 12


def test_default_cache_honours_xdg_cache_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vmrpc.guest.default_cache_dir() == tmp_path / "xdg" / "vmrpc" / "guests"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert vmrpc.guest.default_cache_dir() == tmp_path / "home" / ".cache" / "vmrpc" / "guests"


def test_sdk_flags_are_those_of_the_guest_makefile() -> None:
    flags = vmrpc.guest.sdk_cflags()

    for flag in ("-ffreestanding", "-mno-red-zone", "-nostdlib"):
        assert flag in flags
    assert "-mgeneral-regs-only" not in flags  # users' code may use float and double
    makefile = Path(__file__).resolve().parents[1] / "guest" / "Makefile"
    if makefile.is_file():  # running from a checkout: the shipped copy is current
        printed = subprocess.run(
            ["make", "-s", "-C", str(makefile.parent), "print-cflags"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MAKEFLAGS": ""},
        ).stdout.split()
        assert flags == printed


def test_build_guest_help() -> None:
    result = vmrpc_cli("build-guest", "--help")

    assert result.returncode == 0
    assert "usage: vmrpc build-guest" in result.stdout
    assert "--cflags" in result.stdout


# ---- the SDK's C library (tests/guests/libc_check.c), checked against Python ----------

LIBC_CHECK = Path(__file__).with_name("guests") / "libc_check.c"
LLONG_MIN, LLONG_MAX, ULLONG_MAX = -(2**63), 2**63 - 1, 2**64 - 1
ERANGE = 34
C_SPACE = " \t\n\v\f\r"


@pytest.fixture(scope="module")
def libc_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vmrpc.guest.build(LIBC_CHECK, cache_dir=tmp_path_factory.mktemp("cache"))


def run_libc(vm_factory: VmFactory, elf: Path, *args: str) -> list[str]:
    vm = vm_factory(elf, args=list(args))
    assert vm.run() == 0, vm.console
    return vm.console.splitlines()


def c_strtoll(text: str, base: int) -> tuple[int, bool, int]:
    """C's strtoll/strtoull parse: (magnitude with sign, any digits, end offset)."""
    pos = len(text) - len(text.lstrip(C_SPACE))
    sign = 1
    if text[pos : pos + 1] in ("+", "-"):
        sign = -1 if text[pos] == "-" else 1
        pos += 1
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"

    def is_digit(ch: str, b: int) -> bool:
        return ch != "" and ch.lower() in digits[:b]

    rest = text[pos:]
    if base in (0, 16) and rest[:2].lower() == "0x" and is_digit(rest[2:3], 16):
        pos, base = pos + 2, 16
    elif base == 0:
        base = 8 if rest[:1] == "0" else 10
    end = pos
    while end < len(text) and is_digit(text[end], base):
        end += 1
    if end == pos:
        return 0, False, 0
    return sign * int(text[pos:end], base), True, end


def expected_strtoll(text: str, base: int) -> list[str]:
    value, _, end = c_strtoll(text, base)
    signed = min(max(value, LLONG_MIN), LLONG_MAX)
    magnitude = abs(value)
    if magnitude > ULLONG_MAX:
        unsigned, u_errno = ULLONG_MAX, ERANGE
    else:
        unsigned, u_errno = value % 2**64, 0  # C negates in unsigned arithmetic
    return [
        f"ll {signed} {ERANGE if signed != value else 0} {end}",
        f"ull {unsigned} {u_errno} {end}",
    ]


def test_user_code_with_standard_headers_builds_and_links(libc_elf: Path) -> None:
    # libc_check.c includes only standard headers: <string.h>, <stdlib.h>, <errno.h>,
    # <assert.h>, <ctype.h>, <limits.h>, <time.h>, ... Before the SDK had its own, they
    # came from the host's glibc and clashed, or failed to link (assert, ctype).
    assert libc_elf.is_file()


def test_qsort_and_bsearch_match_python(vm_factory: VmFactory, libc_elf: Path) -> None:
    rng = random.Random(1414)
    values = [rng.randint(-(10**12), 10**12) for _ in range(150)] + [7, 7, -1, 0]

    lines = run_libc(vm_factory, libc_elf, "qsort", *map(str, values))

    assert lines[0] == "sorted " + " ".join(map(str, sorted(values)))
    assert lines[1:-1] == [f"found {v} yes" for v in sorted(values)]
    assert lines[-1] == "missing null"


@pytest.mark.parametrize("base", [0, 10, 16, 2, 36])
def test_strtoll_and_strtoull_match_c_semantics(
    vm_factory: VmFactory, libc_elf: Path, base: int
) -> None:
    cases = [
        "0",
        "42",
        "-42",
        "  \t+17xyz",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "-18446744073709551616",
        "99999999999999999999999999",
        "0x7fffffffffffffff",
        "0X8000000000000000",
        "-0x1",
        "0x",
        "0777",
        "1010",
        "zz",
        "",
        "-",
        " ",
    ]

    lines = run_libc(vm_factory, libc_elf, "strtoll", str(base), *cases)

    expected = [line for case in cases for line in expected_strtoll(case, base)]
    assert lines == expected


def test_ctype_matches_the_c_locale(vm_factory: VmFactory, libc_elf: Path) -> None:
    lines = run_libc(vm_factory, libc_elf, "ctype")

    def classes(c: int) -> int:
        ch = chr(c) if 0 <= c < 128 else ""
        tests = [
            ch.isalnum(),
            ch.isalpha(),
            ch in " \t",
            0 <= c < 0x20 or c == 0x7F,
            ch in string.digits,
            0x20 < c < 0x7F,
            ch in string.ascii_lowercase,
            0x20 <= c < 0x7F,
            ch in string.punctuation,
            ch in C_SPACE,
            ch in string.ascii_uppercase,
            ch in string.hexdigits,
        ]
        return sum(1 << k for k, hit in enumerate(tests) if ch and hit)

    def lower(c: int) -> int:
        return ord(chr(c).lower()) if 0 <= c < 128 else c

    def upper(c: int) -> int:
        return ord(chr(c).upper()) if 0 <= c < 128 else c

    assert lines == [f"{c} {classes(c)} {lower(c)} {upper(c)}" for c in range(-1, 256)]


@pytest.mark.parametrize(("a", "b"), [("Hello", "hELp"), ("abc", "ABC"), ("x-ray", "X"), ("", "a")])
def test_string_functions_match_python(
    vm_factory: VmFactory, libc_elf: Path, a: str, b: str
) -> None:
    lines = run_libc(vm_factory, libc_elf, "strings", a, b)

    def sign(x: str, y: str) -> int:
        return (x > y) - (x < y)

    expected = [f"strcasecmp {sign(a.lower(), b.lower())}"]
    expected += [
        f"strncasecmp {n} {sign(a.lower()[:n], b.lower()[:n])}"
        for n in range(max(len(a), len(b)) + 2)
    ]
    expected += [
        f"strnlen 0 {min(len(a), 3)} {len(a)}",
        f"memchr {a.find('x')}",
        f"strdup [{a}] 1",
        f"strndup [{b[:2]}]",
        f"strcat [{a}{b[:3]}]",
    ]
    assert lines == expected


@pytest.mark.parametrize(
    ("delims", "text"), [(",; ", "a,,b; c "), (",", ",,,"), ("/", "/usr//local/bin/"), ("x", "")]
)
def test_strtok_r_matches_python_split(
    vm_factory: VmFactory, libc_elf: Path, delims: str, text: str
) -> None:
    lines = run_libc(vm_factory, libc_elf, "strtok", delims, text)

    tokens = [t for t in re.split(f"[{re.escape(delims)}]", text) if t]
    assert lines == [f"token [{t}]" for t in tokens] + ["done"]


@pytest.mark.parametrize(("n", "s"), [(-42, "hi"), (123456789, "a longer string"), (0, "z")])
def test_sprintf_matches_python_formatting(
    vm_factory: VmFactory, libc_elf: Path, n: int, s: str
) -> None:
    lines = run_libc(vm_factory, libc_elf, "sprintf", str(n), s)

    first = "%5d|%-8s|%x|%+d|%08d|%.3d" % (n, s, n % 2**32, n, n, n)  # noqa: UP031 (C's format)
    second = f"{s}-{s[0]}-{n % 2**64}"
    assert lines == [f"sprintf {len(first)} [{first}]", f"vsprintf {len(second)} [{second}]"]


@pytest.mark.parametrize("n", [0, -5, 5, -2147483647, -(2**40)])
def test_abs_labs_llabs(vm_factory: VmFactory, libc_elf: Path, n: int) -> None:
    lines = run_libc(vm_factory, libc_elf, "abs", str(n))

    as_int = (n + 2**31) % 2**32 - 2**31  # C's conversion of the value to int
    assert lines == [f"abs {abs(as_int)} {abs(n)} {abs(n)}"]


def test_rand_is_the_documented_lcg(vm_factory: VmFactory, libc_elf: Path) -> None:
    lines = run_libc(vm_factory, libc_elf, "rand", "42", "6")

    state, expected = 42, []
    for _ in range(6):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        expected.append(f"rand {state >> 33}")
    assert lines == [f"RAND_MAX {2**31 - 1}", *expected]


def test_usleep_advances_clock(vm_factory: VmFactory, libc_elf: Path) -> None:
    # usleep spins on the TSC until `us` have passed, so clock() (TSC-based) must have
    # moved by at least that much: a correctness check, not a timing bound.
    lines = run_libc(vm_factory, libc_elf, "clock", "20000")

    assert lines == ["CLOCKS_PER_SEC 1000000", "advanced enough"]


def test_failed_assert_names_file_line_and_expression(
    vm_factory: VmFactory, libc_elf: Path
) -> None:
    line = next(
        i
        for i, text in enumerate(LIBC_CHECK.read_text().splitlines(), 1)
        if "assert(argc < 0);" in text
    )

    vm = vm_factory(libc_elf, args=["assert"])

    assert vm.run() == 134
    assert f"libc_check.c:{line}: main: Assertion `argc < 0' failed." in vm.console


# ---- warnings: shown, not errors, for users' code ------------------------------------

WARNING_C = """\
#include <string.h>

int main(int argc, char **argv)
{
	int unused;
	return (int)strlen("ab");
}
"""


def test_user_warnings_are_logged_not_fatal(
    vm_factory: VmFactory, tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "warn.c"
    source.write_text(WARNING_C)

    with caplog.at_level(logging.WARNING, logger="vmrpc.guest"):
        elf = vmrpc.guest.build(source, cache_dir=cache)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert re.search("unused variable .unused.", warnings[0])  # quotes depend on the locale
    assert re.search("unused parameter .argc.", warnings[0])
    assert vm_factory(elf).run() == 2


def test_build_guest_command_prints_warnings(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "warn.c").write_text(WARNING_C)

    result = vmrpc_cli("build-guest", "warn.c", "--cache-dir", str(cache), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "warn.c:5" in result.stderr
    assert "-Wunused-variable" in result.stderr
    assert (tmp_path / "warn.elf").is_file()


def test_host_headers_are_not_used(tmp_path: Path, cache: Path) -> None:
    # A header only the host's libc has must not be found (-nostdinc).
    source = tmp_path / "host.c"
    source.write_text("#include <sys/mman.h>\nint main(void) { return 0; }\n")

    with pytest.raises(GuestBuildError, match=r"sys/mman\.h"):
        vmrpc.guest.build(source, cache_dir=cache)


def test_failure_report_names_a_built_guest_by_its_source(
    vm_factory: VmFactory, app: Path, cache: Path
) -> None:
    elf = vmrpc.guest.build(app, cflags=["-DANSWER=0"], cache_dir=cache)  # hash-named

    vm_factory(elf, args=["ping"], modules=[NativeModule("echo")])
    titles = [title for title, _ in vm_factory.describe()]

    assert vmrpc.guest.sources_of(elf) == (app.resolve(),)
    assert elf.name != "app.elf"
    assert titles[0].startswith("vmrpc vm 0 (app.c, vcpus=1)")


# ---- floating point in bare guests: printf's %f %e %g, and double arithmetic --------

FLOAT_FORMATS = [
    "%f", "%e", "%g", "%G", "%E", "%F", "%.0f", "%.1f", "%.3e", "%.17g", "%.20f", "%#g",
    "%#.0f", "%#.0e", "%+08.3f", "% -12.4e|", "%.0e", "%.0g", "%#.3g", "%010g", "%-10g|",
    "%.30g", "%.40f", "%.300f", "%5.1f", "%.1g", "%.2g", "%lf",
]  # fmt: skip


FLOAT_CHOSEN = [0.0, 0.5, 1.5, 2.5, 0.05, 0.15, 0.25, 0.35, 9.5, 99.5, 999.9999, 1e21]
FLOAT_CHOSEN += [1e22, 1e-5, 1e-4, 9.999999e-5, 5e-324, 2.2250738585072014e-308]
FLOAT_CHOSEN += [1.7976931348623157e308, 0.1, 1 / 3, 1e15, 1e16, 1e17, 123456789.0]
FLOAT_CHOSEN += [math.inf, math.nan]
FLOAT_CHOSEN += [-v for v in FLOAT_CHOSEN]  # halfway cases, extremes, subnormals, signs


def python_printf(fmt: str, value: float) -> str:
    # Python's %-formatting rounds exactly, as C requires. (glibc is not the oracle: it
    # prints "%#.3g" of 999.9999 as "1.e+03", dropping the zeros '#' must keep.)
    fmt = fmt.replace("%lf", "%f")
    if math.isfinite(value):
        return fmt % value
    # C pads inf and nan with spaces even under '0' (Python pads them with zeros), and
    # prints a NaN's sign bit (-nan), which Python never does: format it as an inf.
    fmt = re.sub(r"%[-+ #0]*", lambda flags: flags.group().replace("0", ""), fmt)
    text = fmt % math.copysign(math.inf, value)
    return text.replace("inf", "nan").replace("INF", "NAN") if math.isnan(value) else text


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_printf_of_doubles_matches_python(vm_factory: VmFactory, libc_elf: Path, fmt: str) -> None:
    # The chosen values, then 2,000 more from the guest's own PRNG (random bit patterns, and
    # magnitudes people print); the guest prints each value's bits beside its text.
    patterns = [struct.pack(">d", v).hex() for v in FLOAT_CHOSEN]
    count = 200 if "300" in fmt else 2000  # keeps the console under its 1 MiB limit

    lines = run_libc(
        vm_factory, libc_elf, "float", fmt, str(len(fmt) * 7919), str(count), *patterns
    )

    assert len(lines) == len(patterns) + count
    assert [line.split(" ", 1)[0] for line in lines[: len(patterns)]] == patterns
    for line in lines:
        bits, printed = line.split(" ", 1)
        text = python_printf(fmt, struct.unpack(">d", bytes.fromhex(bits))[0])
        assert printed == f"{len(text)} [{text}]", bits


def test_double_arithmetic_survives_exits(vm_factory: VmFactory, libc_elf: Path) -> None:
    n = 200_000
    expected = []
    total, product = 0.0, 1.0
    for k in range(1, n + 1):
        total += 1.0 / (float(k) * float(k))
        product *= 1.0 + 1.0 / float(k * 1000)
        if k % (n // 4) == 0:
            expected.append(f"step {k} {total:.17g} {product:.17g}")
    x = 2.0
    for i in range(8):
        x = 0.5 * (x + 2.0 / x)
        expected.append(f"newton {i} {x:.17g}")

    assert run_libc(vm_factory, libc_elf, "series", str(n)) == expected
