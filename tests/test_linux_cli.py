"""``python -m vmrpc run --linux``, run as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
from linux_support import require_busybox

from conftest import run_python

pytestmark = pytest.mark.kvm


def test_stdout_stderr_and_exit_status_pass_through(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from the host\n")
    result = run_python(
        "-m", "vmrpc", "run", "--linux", "--timeout", "60",
        "--mount", f"{tmp_path}:/h:ro", "--env", "WHO=guest",
        str(require_busybox()), "--",
        "sh", "-c", 'read x < /h/in.txt; echo "$x"; echo "$WHO" >&2; exit 5',
    )  # fmt: skip
    assert result.returncode == 5, result.stderr
    assert result.stdout == "from the host\n"
    assert result.stderr == "guest\n"


def test_trace_goes_to_stderr() -> None:
    result = run_python(
        "-m", "vmrpc", "run", "--linux", "--trace", "--timeout", "60",
        str(require_busybox()), "echo", "hi",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    assert "[trace] write(1, " in result.stderr


def test_dynamic_program_runs_and_a_missing_interpreter_is_a_usage_error(
    tmp_path: Path,
) -> None:
    result = run_python("-m", "vmrpc", "run", "--linux", "--timeout", "60", "/bin/echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    result = run_python("-m", "vmrpc", "run", "--linux", "--sysroot", str(tmp_path), "/bin/ls")
    assert result.returncode == 2
    assert "interpreter /lib64/ld-linux-x86-64.so.2" in result.stderr
