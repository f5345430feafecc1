"""execve in the Linux personality (docs/linux.md, "execve").

busybox sh runs real commands (forked children that exec busybox applets, Debian's
dynamic programs and `#!` scripts from mounts); tests/linux_programs/exec.c execs
itself natively and in the VM and must print the same lines (arguments, environment,
close-on-exec, signal dispositions, EFAULT on bad pointers, a dynamic program exec'd
from a static one); CPython's subprocess runs a program. Each failed before execve
was built (it answered ENOSYS: status 126, "Function not implemented").
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from linux_support import TIMEOUT, libc_programs, require_busybox

from vmrpc.linux import LinuxVM, Mount
from vmrpc.linux.dynamic import system_mounts

pytestmark = pytest.mark.kvm

program = libc_programs(Path(__file__).parent / "linux_programs" / "exec.c")
fexecve_program = libc_programs(Path(__file__).parent / "linux_programs" / "fexecve.c")

#: The host's /usr/bin at /bin (busybox and Debian's programs where sh looks).
BIN = Mount(Path("/usr/bin"), "/bin", readonly=True)


def sh(script: str, data: Path | None = None, dynamic: bool = False) -> tuple[int, bytes, bytes]:
    mounts = [BIN]
    if data is not None:
        mounts.append(Mount(data, "/data", readonly=True))
    if dynamic:
        mounts += system_mounts(None)
    with LinuxVM(
        require_busybox(),
        ["sh", "-c", script],
        mounts=mounts,
        env={"PATH": "/bin"},
        timeout=TIMEOUT,
    ) as vm:
        code = vm.run()
        return code, vm.stdout, vm.stderr


def test_sh_runs_programs_and_their_status() -> None:
    code, out, err = sh("busybox echo one; busybox true; echo $?; busybox false; echo $?")
    assert (code, out, err) == (0, b"one\n0\n1\n", b"")


def test_pipeline_of_programs_over_a_mount(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}").write_text(str(i))
    # ls (its output fits the pipe: the left side ends before wc runs) into wc.
    code, out, err = sh("busybox ls /data | busybox wc -l", data=tmp_path)
    assert (code, out.strip(), err) == (0, b"5", b"")


def test_env_i_gives_the_new_program_only_what_it_names() -> None:
    code, out, err = sh("busybox env -i A=1 busybox env")
    assert (code, out, err) == (0, b"A=1\n", b"")


def test_missing_and_non_executable_files(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("hello\n")
    (tmp_path / "text").chmod(0o644)
    code, out, err = sh("nothere; echo $?; /data/text; echo $?", data=tmp_path)
    assert (code, out) == (0, b"127\n126\n")
    assert err == b"sh: nothere: not found\nsh: /data/text: Permission denied\n"


def test_scripts_run_by_their_interpreter_line(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/busybox sh\necho script $0 $1\nexit 5\n")
    script.chmod(0o755)
    # A script naming a script: argv grows by one interpreter per line.
    outer = tmp_path / "outer"
    outer.write_text("#!/data/s.sh\n")
    outer.chmod(0o755)
    loop = tmp_path / "loop"
    loop.write_text("#!/data/loop\n")
    loop.chmod(0o755)
    code, out, err = sh("/data/s.sh one; echo $?; /data/outer two; /data/loop; echo $?", tmp_path)
    assert out == b"script /data/s.sh one\n5\nscript /data/s.sh /data/outer\n127\n"
    assert b"/data/loop: Too many levels of symbolic links" in err  # ELOOP, as Linux
    assert code == 0


def test_dynamic_programs_and_proc_self_exe() -> None:
    code, out, err = sh(
        "/bin/env -i B=2 /usr/bin/env; busybox readlink /proc/self/exe; "
        "/bin/readlink /proc/self/exe",
        dynamic=True,
    )
    assert (code, out, err) == (0, b"B=2\n/bin/busybox\n/bin/readlink\n", b"")


def test_exec_answers_like_linux(program: Path) -> None:
    native = subprocess.run(
        [program, program, "/usr/bin/env"], check=False, capture_output=True, timeout=TIMEOUT
    )
    guest_self = f"/prog/{program.name}"
    mounts = [Mount(program.parent, "/prog", readonly=True), *system_mounts(None)]
    with LinuxVM(program, [guest_self, "/usr/bin/env"], mounts=mounts, timeout=TIMEOUT) as vm:
        code = vm.run()
        got = vm.stdout.decode().splitlines()
    assert code == native.returncode == 3, vm.stderr
    want = native.stdout.decode().splitlines()
    assert got == want
    # What the lines say, so that a Linux that changed would not pass unnoticed.
    for line in [
        "bad path: -14",
        "bad argv array: -14",
        "bad argv string: -14",
        "bad envp array: -14",
        "missing: -2",
        "huge argument: -7",
        "directory: -13",
        "X=1",
        "dynamic program exited 0",
        "new image: argc 7: child two words ",
        "environment: 2 entries, GREETING=hello",
        "pid kept: yes",
        "fd without O_CLOEXEC: open",
        "its bytes: kept",
        "fd with O_CLOEXEC: closed",
        "SIGUSR1 default, SIGUSR2 ignored",
    ]:
        assert line in got


def test_fexecve_answers_like_linux(fexecve_program: Path, tmp_path: Path) -> None:
    # execveat(fd, "", AT_EMPTY_PATH): EBADF, EACCES for a pipe, ENOENT for a script
    # (its interpreter could not open /dev/fd/N), then the program through an fd
    # left open in the new image. It answered ENOSYS before (glibc's and musl's
    # fexecve then tried /proc/self/fd/N: ENOENT).
    prog = tmp_path / fexecve_program.name
    prog.write_bytes(fexecve_program.read_bytes())
    prog.chmod(0o755)
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho script\n")
    script.chmod(0o755)
    native = subprocess.run([prog, prog, script], check=False, capture_output=True, timeout=TIMEOUT)
    with LinuxVM(
        prog,
        [f"/t/{prog.name}", "/t/script.sh"],
        mounts=[Mount(tmp_path, "/t", readonly=True)],
        timeout=TIMEOUT,
    ) as vm:
        code = vm.run()
        got = vm.stdout
    assert (code, got) == (native.returncode, native.stdout), vm.stderr
    assert got.decode().splitlines() == [
        "bad fd: -9",
        "pipe: -13",
        "script: -2",
        "new image: new image",
        "AT_EXECFN is /dev/fd/N: yes",
        "fd 3 still open: yes",
    ]
    assert code == 5


def python(code: str) -> tuple[int, bytes, bytes]:
    """The host's python3 running ``code`` in a VM, busybox reachable at /bin."""
    with LinuxVM("/usr/bin/python3", ["-c", code], mounts=[BIN], timeout=TIMEOUT) as vm:
        status = vm.run()
        return status, vm.stdout, vm.stderr


def test_python_subprocess_runs_a_program() -> None:
    # CPython's _posixsubprocess: vfork, then execve in the child.
    status, out, err = python(
        "import subprocess; "
        "print(subprocess.run(['/bin/busybox', 'echo', 'hi'], capture_output=True).stdout)"
    )
    assert (status, out) == (0, b"b'hi\\n'\n"), err


def test_posix_spawn_clone_vm_vfork_on_a_stack() -> None:
    # glibc's posix_spawn: clone3(CLONE_VM|CLONE_VFORK) with a stack (EINVAL before).
    status, out, err = python(
        "import os; "
        "pid = os.posix_spawn('/bin/busybox', ['busybox', 'echo', 'spawned'], {}); "
        "print(os.waitpid(pid, 0)[1])"
    )
    assert (status, out) == (0, b"spawned\n0\n"), err
