# vmrpc top-level build. GNU make.
#
#   make dev     .venv with the pinned tools, guest build, guest SDK copied into the
#                package, and the native extension built into the venv (maturin develop)
#   make demo    dev, then `python -m vmrpc demo`
#   make test    dev, then Rust and Python lint/type checks (and the _vmm stub against
#                the built module), cargo test and pytest
#   make bench   dev, then `python -m vmrpc bench`
#   make wheel   dist/: the sdist, and a portable (manylinux2014) wheel built from it
#   make fuzz    coverage-guided fuzzing of every parser of guest-controlled bytes
#                (fuzz/): each target for FUZZ_SECONDS (default 60); not part of test
#   make clean   remove everything the build made
#
# Nothing installed by hand is assumed: the venv is built from requirements-dev.txt.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := dev
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
CARGO ?= cargo
VENV := .venv
VPY := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps

# Build-time Python for PyO3 (cargo clippy/test with the bindings, maturin): the venv's.
export PYO3_PYTHON := $(abspath $(VPY))

PKG := python/vmrpc
SDK := $(PKG)/_guest

# Paths given to ruff; benches/ and examples/ only once they exist.
PY_LINT_PATHS := python tests $(wildcard benches) $(wildcard examples)

# Inputs of the native extension: when none changed and the built module is in place,
# `maturin develop` is skipped (it would be an incremental no-op, but a slow one).
RUST_SOURCES := Cargo.toml $(wildcard Cargo.lock) pyproject.toml \
	$(shell find crates -type f \( -name '*.rs' -o -name 'Cargo.toml' -o -name 'build.rs' \) 2>/dev/null)
EXT_MODULE := $(wildcard $(PKG)/_vmm*.so)

.PHONY: dev venv guest sdk ext wheel demo test lint test-rust test-python bench fuzz clean \
	linux-deps source-size FORCE

dev: venv sdk ext

# --- Python environment --------------------------------------------------------------

venv: $(STAMPS)/venv

$(STAMPS)/venv: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet -r requirements-dev.txt
	mkdir -p $(STAMPS) && touch $@

# --- Guest images and SDK -------------------------------------------------------------

# The guest Makefile is incremental; always ask it.
guest:
	$(MAKE) -s -C guest

# Guests shipped to users as built-in images (`vmrpc images`). The Linux personality
# (linux.elf) goes to _guest/linux/: LinuxVM boots it, it is no example. Every other app
# is a test or benchmark guest: it goes to _guest/testing/, which wheels leave out.
EXAMPLE_IMAGES := demo hello fault spin smp http_get tcp_echo_client echo_server udp_echo

# Copy the guest build into the package (generated, gitignored). Built in a scratch
# directory and swapped in, so a failed copy never leaves half an SDK behind. This is
# also how every package build gets its guests: crates/vmm/build.rs runs `make sdk`.
sdk: guest
	rm -rf $(SDK).tmp
	mkdir -p $(SDK).tmp/images $(SDK).tmp/testing $(SDK).tmp/linux $(SDK).tmp/lib
	for elf in guest/build/*.elf; do \
		name=$$(basename "$$elf" .elf); \
		if [[ " $(EXAMPLE_IMAGES) " == *" $$name "* ]]; then dest=images; \
		elif [[ $$name == linux ]]; then dest=linux; else dest=testing; fi; \
		cp "$$elf" "$(SDK).tmp/$$dest/"; \
	done
	cp -r guest/include $(SDK).tmp/include
	cp guest/build/libvmrpc.a guest/build/crt0.o guest/rt/guest.ld $(SDK).tmp/lib/
	# The Linux programs' SDK (docs/linux.md): its header, the ABI it uses, its library.
	mkdir -p $(SDK).tmp/linux/include/vmrpc $(SDK).tmp/linux/lib
	cp guest/linux/sdk/include/vmrpc_linux.h $(SDK).tmp/linux/include/
	cp guest/linux/sdk/include/vmrpc/linux_calls.h guest/include/vmrpc/abi.h \
		$(SDK).tmp/linux/include/vmrpc/
	cp guest/build/libvmrpc_linux.a $(SDK).tmp/linux/lib/
	$(MAKE) -s -C guest print-cflags > $(SDK).tmp/cflags.txt
	# build.rs reruns when this stamp is missing (a fresh unpack, a deleted SDK). It
	# carries existence only: dated 1970 so that cargo never takes it for a change.
	touch -d @0 $(SDK).tmp/.complete
	rm -rf $(SDK) && mv $(SDK).tmp $(SDK)

# --- Native extension -----------------------------------------------------------------

ext: $(STAMPS)/ext

$(STAMPS)/ext: $(STAMPS)/venv $(RUST_SOURCES) $(if $(EXT_MODULE),,FORCE)
	VIRTUAL_ENV="$(abspath $(VENV))" PATH="$(abspath $(VENV))/bin:$$PATH" \
		$(VENV)/bin/maturin develop --release --quiet
	touch $@

FORCE:

# --- Packages -------------------------------------------------------------------------

# The sdist first, then the wheel built from the unpacked sdist (as pip builds it), so a
# file the sdist lacks fails here and not on a user's machine. The wheel targets
# manylinux2014 (glibc 2.17) by linking through zig (the ziglang package), and is
# stripped (pyproject.toml). Its own target directory keeps the dev build's warm.
WHEEL_BUILD := target/sdist-build

wheel: venv
	rm -rf dist $(WHEEL_BUILD)
	$(VENV)/bin/maturin sdist --out dist
	mkdir -p $(WHEEL_BUILD)
	# -m: files dated now. The sdist's fixed dates would make cargo take a warm target
	# directory's older build of the project's own crates for fresh.
	tar -xzmf dist/vmrpc-*.tar.gz -C $(WHEEL_BUILD)
	cd $(WHEEL_BUILD)/vmrpc-* && \
		PATH="$(abspath $(VENV))/bin:$$PATH" CARGO_TARGET_DIR="$(abspath target/wheel)" \
		maturin build --quiet --release --zig --compatibility manylinux2014 \
		--out "$(abspath dist)"
	ls -l dist

# --- Entry points ---------------------------------------------------------------------

demo: dev
	$(VPY) -m vmrpc demo

# Programs nobody here wrote, for the Linux personality's tests (tests/test_linux*.py):
# Debian's busybox-static, and musl-gcc to build the project's own test programs.
LINUX_DEPS := /bin/busybox:busybox-static /usr/bin/musl-gcc:musl-tools

linux-deps:
	@missing=""; for d in $(LINUX_DEPS); do \
	  [ -x "$${d%%:*}" ] || missing="$$missing $${d#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    apt-get install -y -q $$missing >/dev/null || \
	      { apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null; }; \
	  else \
	    echo "missing:$$missing. Install them: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

# One concern per file: no Python or C source outside tests/ longer than
# MAX_SOURCE_LINES, and no file exempt. Rust is not checked yet: crates/vmm still has
# files past it until its own split lands.
MAX_SOURCE_LINES := 600

source-size:
	@big=""; for f in $$(git ls-files -co --exclude-standard -- '*.py' '*.pyi' '*.c' '*.h' '*.S' \
		':!tests/'); do \
	  [ -f "$$f" ] && n=$$(wc -l < "$$f") && [ "$$n" -gt $(MAX_SOURCE_LINES) ] && big="$$big $$f ($$n)"; \
	done; \
	[ -z "$$big" ] || { echo "over $(MAX_SOURCE_LINES) lines, split by concern:$$big" >&2; exit 1; }

test: dev linux-deps source-size
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	$(CARGO) test --workspace
	$(VENV)/bin/ruff check $(PY_LINT_PATHS)
	$(VENV)/bin/ruff format --check $(PY_LINT_PATHS)
	$(VENV)/bin/mypy python/vmrpc
	$(VPY) -m mypy.stubtest vmrpc._vmm
	$(VPY) -m pytest -q

bench: dev
	$(VPY) -m vmrpc bench

# --- Fuzzing ----------------------------------------------------------------------------

# libFuzzer (libfuzzer-sys) on stable Rust: SanitizerCoverage is enabled with stable
# codegen flags, as cargo-fuzz does on nightly (minus AddressSanitizer, which needs
# nightly; the targets are safe Rust, and panics and failed checks abort). --target
# keeps the flags off build scripts. A crash is saved in fuzz/artifacts/<target>/ and
# fails the run.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := rpc_engine evq_queue sock_buf
FUZZ_TRIPLE := x86_64-unknown-linux-gnu
FUZZ_RUSTFLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
	-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
	-Cdebug-assertions -Coverflow-checks --cfg fuzzing

fuzz:
	cd fuzz && RUSTFLAGS="$(FUZZ_RUSTFLAGS)" $(CARGO) build --release --bins --target $(FUZZ_TRIPLE)
	for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t fuzz/artifacts/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		fuzz/target/$(FUZZ_TRIPLE)/release/$$t -max_total_time=$(FUZZ_SECONDS) \
			-print_final_stats=1 -artifact_prefix=fuzz/artifacts/$$t/ fuzz/corpus/$$t \
			2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss|#[0-9]+ +DONE|==|SUMMARY|.*panicked)' \
			|| true; \
		test -z "$$(ls fuzz/artifacts/$$t)" || { echo "fuzz $$t: crash in fuzz/artifacts/$$t"; exit 1; }; \
	done

clean:
	-$(MAKE) -C guest clean
	rm -rf $(VENV) $(SDK) $(SDK).tmp target dist
	rm -f $(PKG)/_vmm*.so
	find python tests -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
