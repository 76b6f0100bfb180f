# Shared helpers for the project's scripts (sourced, not run).

# Install a Debian package that provides a command, when missing and we are root.
ensure_cmd() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $2 (for $1)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$2" >/dev/null 2>&1; } || true
  fi
  command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is missing and could not be installed: run 'apt-get install $2' as root" >&2; exit 2; }
}

# Start scstd on an ephemeral loopback port. Sets SCSTD_PID and SCSTD_PORT.
# usage: start_scstd CONFIG LOGFILE
start_scstd() {
  local bin=${SCSTD_BIN:-target/release/scstd}
  "$bin" --config "$1" --listen 127.0.0.1:0 >"$2" 2>&1 &
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
