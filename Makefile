# kourier_lab: two commands do everything on a fresh machine
#   make bench   set up, build, run the default experiment, print the table, write the plots
#   make test    set up, build, run the whole test suite (what CI runs)
#   make lab     set up as `make bench` does, then JupyterLab on notebooks/ (no browser; prints the URL)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# wrk and h2load (nghttp2-client) and a C compiler for the benchmarks and native modules; Go, nginx and the Debian
# Rust crates (hyper, tokio; built offline) for the peers
APT_PACKAGES := wrk nghttp2-client build-essential golang-go nginx librust-hyper-dev librust-tokio-dev
# headless Chromium for the notebook test in a real browser (Playwright drives it; its own download is not used)
APT_PACKAGES += chromium
# sshd for the [hosts] tests (one per network namespace), iproute2 for the namespaces
APT_PACKAGES += openssh-server openssh-client iproute2
# kourier-lab profile: syscall counts, exact instruction counts, cpu-clock samples
APT_PACKAGES += strace valgrind linux-perf
# liburing's header and library: the uring loop's io_uring driver (native/loop_uring.c; built without it, the loop refuses)
APT_PACKAGES += liburing-dev
# Debian's cargo only when the machine has no Rust toolchain of its own
ifeq ($(shell command -v cargo 2>/dev/null || ls $(HOME)/.cargo/bin/cargo 2>/dev/null),)
APT_PACKAGES += cargo
endif
EXPERIMENT ?= experiments/quick.toml
# make lab: JupyterLab's port (LAB_PORT, else PORT, else 8888) and address
LAB_PORT ?= $(or $(PORT),8888)
LAB_IP   ?= 127.0.0.1
# Jupyter refuses root unless told (CI and containers run as root)
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: all setup system build test bench lab kernel sanitize clean

all: bench

# Debian packages the tests and benchmarks need (installed only when missing)
system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
	  else echo "kourier-lab: missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; fi; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# the package, its test tools, and the native modules (cffi builds them during install)
$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py $(wildcard native/*.c native/*.h native/build_*.py)
	$(BIN)/pip install -q -e '.[test,peers,hosts]'
	touch $@

# then Numba's on-disk cache, warmed for every configuration that uses it: no server
# compiles while it serves, and no start waits minutes (kourier_lab/server/warm_up.py)
setup: system $(VENV)/.installed
	$(BIN)/python -m kourier_lab.server.warm_up

build: setup

# pytest-xdist workers: most tests wait on servers, timers and sockets, so more
# workers than CPUs shortens the suite; a file's tests stay on one worker
TEST_WORKERS ?= 4
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=25

bench: setup
	$(BIN)/kourier-lab bench $(EXPERIMENT)

# the notebooks' kernel ("python3", as they name it) is this .venv's Python, written into the venv
kernel: setup
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kourier_lab .venv)" >/dev/null

# JupyterLab on notebooks/, headless-friendly: no browser, the URL with its token printed
lab: kernel
	@echo "kourier-lab: JupyterLab on notebooks/ at http://$(LAB_IP):$(LAB_PORT)/ (open the URL with the token below; Ctrl-C stops it)"
	$(BIN)/jupyter lab --no-browser --ip=$(LAB_IP) --port=$(LAB_PORT) --ServerApp.port_retries=0 \
	    --ServerApp.root_dir=notebooks --ServerApp.open_browser=False $(LAB_ROOT_FLAG)

# AddressSanitizer + UndefinedBehaviorSanitizer build of native/ over the parser corpus and a
# fuzz pass (the test suite runs the same through tests/native/test_native_sanitizers.py)
sanitize: setup
	$(MAKE) -C native asan

clean:
	rm -rf build native/build kourier_lab/*.so kourier_lab/_native*.c $(VENV)/.installed
