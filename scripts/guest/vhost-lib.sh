# shellcheck shell=bash
# Host side of the virtio-scsi guest tests (sourced by scripts/guest/vhost and
# scripts/guest/vhost-bench after scripts/lib.sh and scripts/guest/lib.sh): the guest is
# the initiator, its LUNs come from QEMU's built-in virtio-scsi (VHOST_MODE=builtin) or
# from scstd on the host through vhost-user-scsi (VHOST_MODE=vhost). README.md in this
# directory describes the protocol.

VHOST_MODE=${VHOST_MODE:-builtin}
case "$VHOST_MODE" in
  builtin | vhost) ;;
  *) echo "error: VHOST_MODE is '$VHOST_MODE', expected builtin or vhost" >&2; exit 2 ;;
esac
# The guest needs the virtio-scsi driver and the CD-ROM driver besides the kit's.
# shellcheck disable=SC2034 # read by guest_fetch_kernel
GUEST_EXTRA_MODULES="virtio_scsi sr_mod"
SCSTD_BIN=${SCSTD_BIN:-${CARGO_TARGET_DIR:-target}/release/scstd}
SCSTADMIN_BIN=${SCSTADMIN_BIN:-${CARGO_TARGET_DIR:-target}/release/scstadmin}
VH_SCSTD_PID=""
VH_MON_FD=""
VH_MON_CAT=""

# The release scstd and scstadmin, in vhost mode only (builtin mode runs no scstd).
vh_build() {
  [ "$VHOST_MODE" = vhost ] || return 0
  cargo build --release -p scstd -p scstadmin --bin scstd --bin scstadmin
}

# Whether QEMU's vhost-user-scsi device gets the chardev's reconnect=1: it can follow a
# restarted backend from QEMU 8.2 on. Before that (checked with 7.2) the device is
# created before the chardev's connection (asynchronous with reconnect=) is made, and
# QEMU refuses to start: "Failed to set msg fds ... vhost_backend_init failed".
# VHOST_RECONNECT=1 or 0 overrides the version check.
vh_reconnect() {
  case "${VHOST_RECONNECT:-auto}" in
    1) return 0 ;;
    0) return 1 ;;
  esac
  local v
  v=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  # shellcheck disable=SC2086 # two numbers
  set -- $v
  [ "${1:-0}" -gt 8 ] || { [ "${1:-0}" -eq 8 ] && [ "${2:-0}" -ge 2 ]; }
}

# The QEMU arguments of a vhost-user-scsi controller on SOCK (with reconnect=1 when
# vh_reconnect says so).
vh_vhost_args() { # sock
  local opts="socket,id=vhs,path=$1"
  vh_reconnect && opts="$opts,reconnect=1"
  echo "-chardev $opts -device vhost-user-scsi-pci,chardev=vhs,num_queues=2"
}

# vhost-user needs the guest's memory shared with the backend: a memfd backend, in
# both modes so that the guest is the same.
vh_memory_args() {
  echo "-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem"
}

# A QMP monitor on a pair of FIFOs, WORK/mon.in and WORK/mon.out (QEMU's `pipe`
# chardev): what it answers is appended to WORK/mon.log, one JSON line per answer or
# event. Prints the QEMU arguments; vh_monitor_open must follow once QEMU runs.
vh_monitor_args() { # work
  rm -f "$1/mon.in" "$1/mon.out"
  mkfifo "$1/mon.in" "$1/mon.out"
  echo "-chardev pipe,id=mon0,path=$1/mon -mon chardev=mon0,mode=control"
}

vh_monitor_open() { # work
  : >"$1/mon.log"
  # Read-write opens: neither blocks for want of the other end.
  exec {VH_MON_FD}<>"$1/mon.in"
  cat <>"$1/mon.out" >>"$1/mon.log" &
  VH_MON_CAT=$!
  vh_qmp "$1" '{"execute": "qmp_capabilities"}' >/dev/null
}

# One QMP command (a JSON line); fails if QEMU answers with an error. Prints the answer.
vh_qmp() { # work json
  local before answer=""
  before=$(wc -l <"$1/mon.log")
  echo "$2" >&"$VH_MON_FD"
  for _ in $(seq 300); do
    answer=$(tail -n +"$((before + 1))" "$1/mon.log" | grep -m1 '"return"\|"error"' || true)
    [ -n "$answer" ] && break
    sleep 0.1
  done
  if [ -z "$answer" ] || printf '%s' "$answer" | grep -q '"error"'; then
    echo "error: QMP $2: ${answer:-no answer}" >&2
    return 1
  fi
  printf '%s\n' "$answer"
}

# One human monitor (HMP) command through QMP; fails if its output says it failed.
vh_monitor() { # work command...
  local work=$1; shift
  local answer
  answer=$(vh_qmp "$work" "{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"$*\"}}") || return 1
  if printf '%s' "$answer" | grep -qi 'error\|could not\|failed\|not found'; then
    echo "error: monitor command '$*': $answer" >&2
    return 1
  fi
}

vh_monitor_close() {
  [ -z "$VH_MON_CAT" ] || { kill "$VH_MON_CAT" 2>/dev/null || true; wait "$VH_MON_CAT" 2>/dev/null || true; }
  [ -z "$VH_MON_FD" ] || exec {VH_MON_FD}>&-
  VH_MON_CAT=""
  VH_MON_FD=""
}

# scstd on the host with CONF and a management socket WORK/mgmt.sock (log appended to
# LOG); returns once the management socket answers for target vm1 of driver vhost and
# the vhost-user socket SOCK exists. Both may be left over from a killed scstd: the
# answer is what tells the new one is up. Sets VH_SCSTD_PID.
vh_start_scstd() { # conf work sock log
  "$SCSTD_BIN" --config "$1" --listen 127.0.0.1:0 --mgmt-socket "$2/mgmt.sock" \
    --state-dir "$2/state" >>"$4" 2>&1 &
  VH_SCSTD_PID=$!
  for _ in $(seq 100); do
    if [ -S "$3" ] && "$SCSTADMIN_BIN" -socket "$2/mgmt.sock" -list_tgt_attr vm1 -driver vhost >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$VH_SCSTD_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "error: scstd did not serve target vm1 on $3; its log:" >&2
  tail -30 "$4" >&2
  return 1
}

vh_stop_scstd() {
  [ -n "$VH_SCSTD_PID" ] || return 0
  kill -TERM "$VH_SCSTD_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$VH_SCSTD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$VH_SCSTD_PID" 2>/dev/null || true
  wait "$VH_SCSTD_PID" 2>/dev/null || true
  VH_SCSTD_PID=""
}

vh_scstadmin() { # work args...
  local work=$1; shift
  "$SCSTADMIN_BIN" -socket "$work/mgmt.sock" -noprompt "$@" >>"$work/scstadmin.log" 2>&1 ||
    { echo "error: scstadmin $*:" >&2; tail -5 "$work/scstadmin.log" >&2; return 1; }
}

# Wait up to SECS for an extended regular expression in the console LOG (anywhere in a
# line: the kernel's messages may share the line). Fails early if the guest failed or
# QEMU exited.
vh_wait() { # log regex secs
  for _ in $(seq "$(($3 * 10))"); do
    grep -Eq -- "$2" "$1" && return 0
    grep -q 'GUEST-FAILED' "$1" && break
    kill -0 "${GUEST_PID:-0}" 2>/dev/null || break
    sleep 0.1
  done
  echo "error: '$2' did not appear on the guest's console within $3 s" >&2
  return 1
}

# The CPU time (user + system) of a process in clock ticks, 0 when it is gone.
vh_cpu_ticks() { # pid
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  # Fields after the command name (which may hold spaces): utime and stime are the
  # 12th and 13th after ')'.
  echo "${stat##*) }" | awk '{ print $12 + $13 }'
}
