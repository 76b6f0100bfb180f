# Shared helpers for the project's scripts (sourced, not run).

# Install a Debian package that provides a command, when missing and we are root.
# Whether standard input has a line matching PATTERN (grep's basic syntax). Unlike
# `grep -q`, it reads to the end: under `set -o pipefail` a writer that meets a pipe
# grep -q has already closed fails the pipeline (scstadmin exits 141 then, as SCST's
# does), a race that depends on how the writer splits its output.
has() { # pattern
  grep -c -- "$1" >/dev/null
}

ensure_cmd() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $2 (for $1)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null 2>&1; } || true
  fi
  command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is missing and could not be installed: run 'apt-get install $2' as root" >&2; exit 2; }
}

# The checks that need no daemon: formatting, clippy with warnings as errors, the API
# docs without warnings (broken intra-doc links), and a build of the fuzz targets.
# fuzz/ is a workspace of its own, so it is formatted and built on its own, into a
# directory of its own under the target directory. On stable its binaries are libFuzzer
# linked without coverage instrumentation: the build proves they compile and link and
# can replay a corpus (fuzz/README.md says how to run a real fuzzing session).
static_checks() {
  cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 ||
    { echo "error: cargo fmt and cargo clippy are needed: run 'rustup component add rustfmt clippy'" >&2; exit 2; }
  cargo fmt --all --check
  cargo fmt --manifest-path fuzz/Cargo.toml --check
  cargo clippy --workspace --all-targets -- -D warnings
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
  cargo build --manifest-path fuzz/Cargo.toml --bins --target-dir "${CARGO_TARGET_DIR:-target}/fuzz"
}

# Start scstd on an ephemeral loopback port. Sets SCSTD_PID and SCSTD_PORT.
# SCSTD_ARGS: more arguments for it, split on spaces (e.g. "--metrics-listen 127.0.0.1:9464").
# usage: start_scstd CONFIG LOGFILE
start_scstd() {
  local bin=${SCSTD_BIN:-target/release/scstd}
  # shellcheck disable=SC2086 # SCSTD_ARGS is a list of arguments
  "$bin" --config "$1" --listen 127.0.0.1:0 ${SCSTD_ARGS:-} >"$2" 2>&1 &
  SCSTD_PID=$!
  SCSTD_PORT=""
  for _ in $(seq 100); do
    SCSTD_PORT=$(sed -n 's/.*portal listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$2" | head -1)
    [ -n "$SCSTD_PORT" ] && return 0
    kill -0 "$SCSTD_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "error: scstd did not start; its log:" >&2; cat "$2" >&2; return 1
}

stop_scstd() {
  [ -n "${SCSTD_PID:-}" ] || return 0
  kill -TERM "$SCSTD_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SCSTD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SCSTD_PID" 2>/dev/null || true
  wait "$SCSTD_PID" 2>/dev/null || true
  SCSTD_PID=""
}
