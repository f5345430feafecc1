"""Build your own guest programs from C with the guest SDK shipped in the package.

A guest is freestanding C: ``#include <vmrpc.h>`` gives it the console (``printf``),
``exit``, a heap, strings and the VM RPC client; ``main``'s return value is the VM's
exit code::

    from vmrpc import VM
    from vmrpc.guest import build

    elf = build(["app.c"])            # compiled once, then served from the cache
    with VM(elf, modules=[...]) as vm:
        print(vm.run(timeout=10), vm.console)

`build` runs the system C compiler (``$CC``, else ``gcc``, else ``cc``) with the flags
the project's own guests are built with (``-ffreestanding -mno-red-zone -Wall
-Wextra ...``, shipped as ``cflags.txt``; warnings are shown, through
``logging.warning``, but are not errors), the SDK's headers, ``crt0.o``, ``libvmrpc.a``
and the linker script ``guest.ld``. Standard headers come from the SDK (``<stdio.h>``,
``<stdlib.h>``, ``<string.h>``, ``<ctype.h>``, ``<assert.h>``, ``<errno.h>``, ...) and
the compiler's freestanding ones (``<stdint.h>``, ``<stddef.h>``, ``<stdbool.h>``, ...),
never from the host's libc (``-nostdinc``). The same from the shell::

    python -m vmrpc build-guest app.c more.c -o app.elf

Results are cached in ``$XDG_CACHE_HOME/vmrpc/guests`` (``~/.cache/vmrpc/guests``),
keyed on a hash of the sources, the flags, the compiler and the SDK; headers the
sources include from outside the SDK are recorded at build time and checked on every
later use, so editing one rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from vmrpc.errors import GuestBuildError
from vmrpc.images import sdk_include_dir, sdk_lib_dir

__all__ = ["build", "default_cache_dir", "find_compiler", "sdk_cflags", "std_include_flags"]

log = logging.getLogger("vmrpc.guest")

# Bump when the build recipe changes, so old cache entries are not reused.
_RECIPE_VERSION = b"vmrpc-guest-build 2"
_SDK_LIB_FILES = ("crt0.o", "libvmrpc.a", "guest.ld")
_CFLAGS_FILE = "cflags.txt"

Source = str | os.PathLike[str]


def default_cache_dir() -> Path:
    """Return the default build cache: ``$XDG_CACHE_HOME/vmrpc/guests`` or ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmrpc" / "guests"


def find_compiler() -> list[str]:
    """Return the C compiler command: ``$CC`` (split like a shell would), else gcc or cc.

    Raises:
        GuestBuildError: ``$CC`` names no executable, or neither gcc nor cc is installed.
    """
    env = os.environ.get("CC", "").strip()
    if env:
        command = shlex.split(env)
        resolved = shutil.which(command[0])
        if resolved is None:
            raise GuestBuildError(
                f"no C compiler: CC={env!r} is not an executable; install gcc or set CC "
                "to a C compiler for x86-64"
            )
        return [resolved, *command[1:]]
    for name in ("gcc", "cc"):
        resolved = shutil.which(name)
        if resolved is not None:
            return [resolved]
    raise GuestBuildError(
        "no C compiler found (looked for $CC, gcc and cc on PATH); install gcc "
        "(e.g. `apt-get install gcc`) or set CC"
    )


def sdk_cflags() -> list[str]:
    """Return the compiler flags of the guest SDK (those of ``make -C guest``).

    Raises:
        GuestBuildError: the SDK is not installed (run ``make dev`` in a checkout).
    """
    path = sdk_lib_dir().parent / _CFLAGS_FILE
    missing = [p for p in (path, *(sdk_lib_dir() / n for n in _SDK_LIB_FILES)) if not p.is_file()]
    if missing or not (sdk_include_dir() / "vmrpc.h").is_file():
        what = ", ".join(str(p) for p in missing) or "vmrpc.h"
        raise GuestBuildError(
            f"the guest SDK is incomplete (missing {what}); run `make dev` in a vmrpc "
            "checkout, or install a vmrpc wheel"
        )
    return shlex.split(path.read_text())


def std_include_flags(compiler: Sequence[str]) -> list[str]:
    """Return the flags that take standard headers from the SDK and the compiler only.

    ``-nostdinc`` drops the host's libc headers (they clash with the SDK's runtime);
    the SDK's ``include/libc`` provides ``<stdio.h>``, ``<string.h>`` and the rest, and
    the compiler's own include directory the freestanding ``<stdint.h>``, ``<stdarg.h>``.

    Raises:
        GuestBuildError: the compiler cannot tell where its headers are.
    """
    command = [*compiler, "-print-file-name=include"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise GuestBuildError(f"cannot run {command[0]}: {error}", command=command) from error
    cc_include = done.stdout.strip()
    if done.returncode != 0 or not Path(cc_include).is_dir():
        raise GuestBuildError(
            f"{shlex.join(command)} did not name the compiler's header directory "
            f"(got {cc_include!r}); vmrpc needs gcc or clang",
            command=command,
            stderr=done.stderr,
        )
    return ["-nostdinc", "-isystem", str(sdk_include_dir() / "libc"), "-isystem", cc_include]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sdk_files() -> list[Path]:
    include = sdk_include_dir()
    files = sorted(p for p in include.rglob("*") if p.is_file())
    files += [sdk_lib_dir() / name for name in _SDK_LIB_FILES]
    files.append(sdk_lib_dir().parent / _CFLAGS_FILE)
    return files


def _compiler_identity(compiler: Sequence[str]) -> str:
    stat = Path(compiler[0]).stat()
    return f"{shlex.join(compiler)} size={stat.st_size} mtime={stat.st_mtime_ns}"


def _cache_key(
    sources: Sequence[Path], compiler: Sequence[str], flags: Sequence[str], extra: Sequence[str]
) -> str:
    digest = hashlib.sha256(_RECIPE_VERSION)

    def add(label: str, value: str) -> None:
        digest.update(f"\0{label}\0{len(value)}\0{value}".encode())

    add("compiler", _compiler_identity(compiler))
    add("sdk-flags", shlex.join(flags))
    add("user-flags", shlex.join(extra))
    if extra:
        add("cwd", os.getcwd())  # relative paths in the user's flags (-Iinc) depend on it
    for path in _sdk_files():
        add("sdk", f"{path.name} {_file_digest(path)}")
    for source in sources:
        add("source", f"{source} {_file_digest(source)}")
    return digest.hexdigest()


def _parse_depfile(text: str) -> list[Path]:
    """Dependencies listed in a make-style ``.d`` file written by ``-MMD``."""
    joined = text.replace("\\\n", " ")
    deps: list[Path] = []
    for line in joined.splitlines():
        target, sep, rest = line.partition(": ")
        if not sep or not target or target.startswith((" ", "\t")):
            continue
        words = rest.replace("\\ ", "\0").split()
        deps.extend(Path(word.replace("\0", " ")) for word in words)
    return deps


def _record_deps(depfiles: Iterable[Path], sources: Sequence[Path]) -> dict[str, str]:
    """Headers the build read from outside the SDK, with their digests."""
    sdk = sdk_include_dir().resolve()
    skip = {str(s) for s in sources}
    recorded: dict[str, str] = {}
    for depfile in depfiles:
        for dep in _parse_depfile(depfile.read_text()):
            path = dep if dep.is_absolute() else Path.cwd() / dep
            path = path.resolve()
            if str(path) in skip or path.is_relative_to(sdk) or not path.is_file():
                continue
            recorded[str(path)] = _file_digest(path)
    return recorded


def _deps_unchanged(meta: Path) -> bool:
    try:
        recorded = json.loads(meta.read_text())
        return all(
            Path(path).is_file() and _file_digest(Path(path)) == digest
            for path, digest in recorded.items()
        )
    except (OSError, ValueError, AttributeError):
        return False


def _run(command: list[str], what: str) -> str:
    """Run one compiler command; return what it wrote to stderr (its warnings)."""
    log.debug("%s: %s", what, shlex.join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise GuestBuildError(
            f"{what} failed: cannot run {command[0]}: {error}", command=command
        ) from error
    if done.returncode != 0:
        stderr = done.stderr.strip() or done.stdout.strip()
        raise GuestBuildError(
            f"{what} failed (exit status {done.returncode}):\n{stderr}",
            command=command,
            stderr=stderr,
        )
    return done.stderr.strip()


def _compile_and_link(
    sources: Sequence[Path],
    compiler: Sequence[str],
    flags: Sequence[str],
    extra: Sequence[str],
    workdir: Path,
) -> tuple[Path, dict[str, str], list[str]]:
    include = sdk_include_dir()
    lib = sdk_lib_dir()
    # Not part of the cache key: the compiler's identity (in the key) decides it.
    stdinc = std_include_flags(compiler)
    objects: list[Path] = []
    depfiles: list[Path] = []
    warnings: list[str] = []
    for index, source in enumerate(sources):
        obj = workdir / f"{index}-{source.stem}.o"
        depfile = obj.with_suffix(".d")
        command = [
            *compiler,
            *flags,
            f"-I{include}",
            *stdinc,
            *extra,
            "-MMD",
            "-MF",
            str(depfile),
            "-c",
            str(source),
            "-o",
            str(obj),
        ]
        warnings.append(_run(command, f"compiling {source.name}"))
        objects.append(obj)
        depfiles.append(depfile)
    elf = workdir / "guest.elf"
    link = [
        *compiler,
        *flags,
        *extra,
        "-T",
        str(lib / "guest.ld"),
        str(lib / "crt0.o"),
        *map(str, objects),
        str(lib / "libvmrpc.a"),
        "-o",
        str(elf),
    ]
    warnings.append(_run(link, "linking"))
    return elf, _record_deps(depfiles, sources), [w for w in warnings if w]


def _install(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically (a reader never sees half a file)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_atomic(dst: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(tmp, dst)


def build(
    sources: Source | Sequence[Source],
    output: Source | None = None,
    *,
    cflags: Sequence[str] = (),
    cache_dir: Source | None = None,
) -> Path:
    """Compile and link a guest from C (or ``.S``) sources; return the ELF image's path.

    Args:
        sources: one source file or several; each is compiled on its own, then all are
            linked with the SDK's ``crt0.o``, ``libvmrpc.a`` and ``guest.ld``.
        output: where to write the image. ``None``: return the image in the cache
            (do not modify it; copy it first).
        cflags: extra compiler flags after the SDK's (``-DNAME=1``, ``-Iinc``, ``-O0``).
        cache_dir: the build cache (default: `default_cache_dir`).

    The compiler runs only when no cached image matches the hash of the sources, the
    flags, the compiler, the SDK and the headers the sources included last time. When
    it runs, its warnings (``-Wall -Wextra``, not errors) are logged with
    ``logging.warning`` on the ``vmrpc.guest`` logger.

    Raises:
        GuestBuildError: no compiler, a missing source, no SDK, or a compile or link
            error (the message contains the compiler's error output).
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if isinstance(cflags, str):
        raise TypeError("cflags must be a sequence of strings, not a single string")
    paths = [Path(s).resolve() for s in sources]
    if not paths:
        raise GuestBuildError("no sources given")
    for path in paths:
        if not path.is_file():
            raise GuestBuildError(f"guest source not found: {path}")
    flags = sdk_cflags()
    compiler = find_compiler()
    extra = list(cflags)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(paths, compiler, flags, extra)
    cached = cache / f"{key}.elf"
    meta = cache / f"{key}.deps.json"
    if cached.is_file() and meta.is_file() and _deps_unchanged(meta):
        log.debug("guest cache hit: %s", cached)
    else:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="vmrpc-guest-") as tmp:
            elf, deps, warnings = _compile_and_link(paths, compiler, flags, extra, Path(tmp))
            _install(elf, cached)
            _write_atomic(meta, json.dumps(deps, indent=1, sort_keys=True))
        log.info("built guest %s from %s", cached, ", ".join(p.name for p in paths))
        if warnings:
            # Users' guests build without -Werror; the warnings are still worth reading.
            log.warning("compiler warnings:\n%s", "\n".join(warnings))
    if output is None:
        _BUILT_FROM[cached.resolve()] = tuple(paths)
        return cached
    target = Path(output)
    _install(cached, target)
    _BUILT_FROM[target.resolve()] = tuple(paths)
    return target


#: The sources of every image `build` returned in this process, by resolved path.
_BUILT_FROM: dict[Path, tuple[Path, ...]] = {}


def sources_of(image: Source) -> tuple[Path, ...]:
    """The C sources `build` made ``image`` from in this process (empty if it did not).

    Reports name a guest by its sources rather than by its cache file's hash name.
    """
    return _BUILT_FROM.get(Path(image).resolve(), ())
