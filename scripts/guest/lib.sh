# The guest kit (sourced, not run): a Debian kernel and a busybox initramfs holding
# scstd, booted under QEMU in software emulation, for the tests that need a kernel of
# their own (power loss, device errors). scripts/guest/README.md describes it.
#
# Everything fetched or built lives under $GUEST_DIR (target/guest/ by default), never
# in the repository. Callers source scripts/lib.sh first (ensure_cmd).

GUEST_DIR=${GUEST_DIR:-${CARGO_TARGET_DIR:-target}/guest}
GUEST_SRC=scripts/guest/guest
# The guest's modules: virtio (PCI, disk, network), ext4 (crc32c is requested by ext4
# at mount through the crypto API, which has no modprobe to call here, so it is named),
# the SCSI disk layer with scsi_debug, and device-mapper (linear and error targets are
# part of dm-mod).
GUEST_MODULES="virtio_pci virtio_blk virtio_net crc32c_generic ext4 sd_mod scsi_debug dm-mod"
# More modules a test wants (e.g. "virtio_scsi sr_mod"), loaded after those above.
GUEST_EXTRA_MODULES=${GUEST_EXTRA_MODULES:-}

# Install what the kit needs from Debian, fetch the kernel package (cached) and extract
# the kernel and the modules the guest loads. Sets GUEST_KERNEL and GUEST_MODULES_LOAD
# (the load order of GUEST_MODULES and GUEST_EXTRA_MODULES). The modules of every set
# asked for so far share kernel/modules/; each set has its load order in kernel/load/.
guest_fetch_kernel() {
  ensure_cmd qemu-system-x86_64 qemu-system-x86
  ensure_cmd busybox busybox-static
  ensure_cmd mkfs.ext4 e2fsprogs
  ensure_cmd dmsetup dmsetup
  mkdir -p "$GUEST_DIR/debs"
  local kdir="$GUEST_DIR/kernel"
  local wanted key
  # shellcheck disable=SC2086 # lists of names
  wanted=$(printf '%s\n' $GUEST_MODULES $GUEST_EXTRA_MODULES)
  key=$(printf '%s\n' "$wanted" | md5sum | cut -c1-12)
  if [ ! -f "$kdir/vmlinuz" ] || [ ! -f "$kdir/load/$key" ]; then
    # linux-image-amd64 is a metapackage: the kernel is the versioned package it
    # depends on.
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
    if [ -z "$pkg" ]; then
      apt-get update >/dev/null 2>&1 || true
      pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
    fi
    [ -n "$pkg" ] || { echo "error: cannot tell which kernel linux-image-amd64 depends on (apt-get update?)" >&2; return 2; }
    if ! ls "$GUEST_DIR/debs/${pkg}"_*.deb >/dev/null 2>&1; then
      echo "guest kit: downloading $pkg" >&2
      (cd "$GUEST_DIR/debs" && apt-get download "$pkg" >/dev/null 2>&1) ||
        { echo "error: apt-get download $pkg failed" >&2; return 2; }
    fi
    local deb
    deb=$(ls "$GUEST_DIR/debs/${pkg}"_*.deb | head -1)
    local x="$GUEST_DIR/kernel.extract"
    rm -rf "$x"
    # A kernel other than the cached one (a newer package): start over.
    if [ -f "$kdir/package" ] && [ "$(cat "$kdir/package")" != "$(basename "$deb")" ]; then
      rm -rf "$kdir"
    fi
    mkdir -p "$x" "$kdir/modules" "$kdir/load"
    dpkg-deb -x "$deb" "$x"
    cp "$x"/boot/vmlinuz-* "$kdir/vmlinuz"
    basename "$deb" >"$kdir/package"
    local moddir
    moddir=$(ls -d "$x"/lib/modules/* | head -1)
    # shellcheck disable=SC2086 # lists of names
    guest_resolve_modules "$moddir" $wanted >"$kdir/modules.order.tmp" || return 2
    # Copy the modules (decompressed if the package compresses them) in load order.
    : >"$kdir/load/$key.tmp"
    local f name
    while read -r f; do
      name=$(basename "$f")
      case "$name" in
        *.ko.xz) xz -dc "$f" >"$kdir/modules/${name%.xz}"; name=${name%.xz} ;;
        *.ko.zst) zstd -qdc "$f" >"$kdir/modules/${name%.zst}"; name=${name%.zst} ;;
        *) cp "$f" "$kdir/modules/$name" ;;
      esac
      echo "$name" >>"$kdir/load/$key.tmp"
    done <"$kdir/modules.order.tmp"
    mv "$kdir/load/$key.tmp" "$kdir/load/$key"
    rm -f "$kdir/modules.order.tmp"
    rm -rf "$x"
  fi
  GUEST_KERNEL="$kdir/vmlinuz"
  GUEST_MODULES_LOAD="$kdir/load/$key"
}

# Print the module files for the named modules with their dependencies first, read
# from each module's own `depends=` (the package ships no modules.dep).
# usage: guest_resolve_modules MODDIR NAME...
guest_resolve_modules() {
  local moddir=$1; shift
  declare -A path=() seen=()
  local rel key
  while read -r rel; do
    key=$(basename "$rel"); key=${key%%.ko*}; key=${key//-/_}
    path[$key]="$moddir/$rel"
  done <"$moddir/modules.order"
  _guest_visit() {
    local k=${1//-/_} f deps d
    [ -n "${seen[$k]:-}" ] && return 0
    seen[$k]=1
    f=${path[$k]:-}
    if [ -z "$f" ]; then
      # Built into the kernel: nothing to load.
      grep -q "/${1}.ko\$\|/${k}.ko\$" "$moddir/modules.builtin" && return 0
      echo "error: kernel module $1 not found under $moddir" >&2; return 1
    fi
    case "$f" in
      *.xz) deps=$(xz -dc "$f" | tr '\0' '\n' | sed -n 's/^depends=//p') ;;
      *.zst) deps=$(zstd -qdc "$f" | tr '\0' '\n' | sed -n 's/^depends=//p') ;;
      *) deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p') ;;
    esac
    for d in ${deps//,/ }; do _guest_visit "$d" || return 1; done
    echo "$f"
  }
  local m
  for m in "$@"; do _guest_visit "$m" || return 1; done
}

# Build the initramfs: busybox, scstd (unless SCSTD_BINARY is empty: a guest that is
# only an initiator) with the shared libraries ldd lists, dmsetup, the modules of
# GUEST_MODULES_LOAD, the guest scripts and configurations. Sets GUEST_INITRD.
# usage: guest_build_initramfs [SCSTD_BINARY]
guest_build_initramfs() {
  local scstd=${1:-}
  if [ -n "$scstd" ]; then
    [ -x "$scstd" ] || { echo "error: $scstd is not built (cargo build --release -p scstd)" >&2; return 2; }
  fi
  local root="$GUEST_DIR/initramfs.root"
  rm -rf "$root"
  mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,run,tmp,mnt,lib/modules,guest}
  cp "$(command -v busybox)" "$root/bin/busybox"
  [ -z "$scstd" ] || cp "$scstd" "$root/bin/scstd"
  cp "$(command -v dmsetup)" "$root/sbin/dmsetup"
  # The libraries each binary loads (none for a static busybox), and the loader.
  local lib
  for lib in $( { [ -z "$scstd" ] || ldd "$scstd"; ldd "$(command -v dmsetup)"; ldd "$(command -v busybox)"; } 2>/dev/null |
                grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  local m
  while read -r m; do cp "$GUEST_DIR/kernel/modules/$m" "$root/lib/modules/"; done <"${GUEST_MODULES_LOAD:?}"
  cp "$GUEST_MODULES_LOAD" "$root/lib/modules/modules.load"
  cp "$GUEST_SRC"/* "$root/guest/"
  cp "$GUEST_SRC/init" "$root/init"
  chmod 755 "$root/init" "$root"/guest/*.sh
  GUEST_INITRD="$GUEST_DIR/initramfs.cpio.gz"
  (cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null) | gzip -1 >"$GUEST_INITRD"
}

# The kit: kernel and initramfs, with the release scstd.
guest_kit() {
  guest_fetch_kernel || return 2
  guest_build_initramfs "${SCSTD_BIN:-${CARGO_TARGET_DIR:-target}/release/scstd}"
}

# QEMU refuses cache=none (O_DIRECT) on file systems without it (tmpfs): say so
# instead of failing later.
guest_check_direct_io() { # image
  dd if=/dev/zero of="$1" bs=4096 count=1 oflag=direct conv=notrunc status=none 2>/dev/null ||
    { echo "error: $(dirname "$1") does not support O_DIRECT, which cache=none needs; set GUEST_DIR elsewhere" >&2; return 2; }
}

# A free TCP port on loopback for the guest's portal.
guest_free_port() {
  "${GUEST_CHECK:?}" free-port
}

# Boot the guest in the background. Sets GUEST_PID and GUEST_PORT; returns once the
# guest reports ready on its console (LOG), or fails with the console's tail.
# usage: guest_boot SCENARIO LOG [DRIVE_SPEC...]   (a spec is QEMU's -drive value;
# GUEST_APPEND adds guest.NAME=VALUE parameters for the scenario)
# GUEST_NET=0: no NIC (the guest is told with guest.net=0 and configures none), for a
# guest that serves nothing; GUEST_PORT is then empty.
# GUEST_QEMU_ARGS: an array of more QEMU arguments (devices, chardevs, a monitor).
# GUEST_BOOT_TIMEOUT: seconds to wait for GUEST-READY (120).
guest_boot() {
  local scenario=$1 log=$2; shift 2
  local drives=() d net=() append=${GUEST_APPEND:-}
  if [ "${GUEST_NET:-1}" = 0 ]; then
    GUEST_PORT=""
    append="guest.net=0 $append"
  else
    GUEST_PORT=$(guest_free_port) || return 2
    # shellcheck disable=SC2054 # commas separate the options of one QEMU argument
    net=(-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$GUEST_PORT-:3260" -device virtio-net-pci,netdev=n0)
  fi
  for d in "$@"; do drives+=(-drive "$d"); done
  : >"$log"
  qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nodefaults -no-reboot \
    -display none -serial "file:$log" -monitor none \
    -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
    -append "console=ttyS0 panic=-1 loglevel=4 guest.scenario=$scenario $append" \
    "${net[@]}" "${drives[@]}" "${GUEST_QEMU_ARGS[@]}" 2>>"$log.qemu" &
  GUEST_PID=$!
  local i
  for i in $(seq "$(( ${GUEST_BOOT_TIMEOUT:-120} * 10 ))"); do
    grep -q '^GUEST-READY' "$log" && return 0
    if grep -q '^GUEST-FAILED' "$log" || ! kill -0 "$GUEST_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "error: the guest ($scenario) did not get ready; its console:" >&2
  tail -40 "$log" >&2
  cat "$log.qemu" >&2 2>/dev/null
  guest_kill
  return 1
}

# Power off the guest at once: SIGKILL to QEMU, so nothing in the guest is flushed.
guest_kill() {
  [ -n "${GUEST_PID:-}" ] || return 0
  kill -KILL "$GUEST_PID" 2>/dev/null || true
  wait "$GUEST_PID" 2>/dev/null || true
  GUEST_PID=""
}
