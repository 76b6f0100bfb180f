# Scenario `vhost` (sourced by init): the guest is the initiator of LUNs on a
# virtio-scsi controller, QEMU's own or vhost-user-scsi served by scstd on the host
# (scripts/guest/vhost). It checks each LUN's identity, an O_DIRECT and a file system
# round trip, hotplug, a capacity change and (vhost only) a backend restart.
#
# Console protocol (the host reads it): `VHOST-STEP <name> ...` when the guest has done
# its part of a step or waits for the host's, `VHOST-PASS|FAIL|SKIP <check>: <detail>`
# per check, `VHOST-READ ok|fail|bad <n>` per read of the reconnect loop, `VHOST-DONE`
# at the end. The guest never waits for the host except by polling sysfs, with a
# timeout.

pass() { echo "VHOST-PASS $1: $2"; }
failed() { echo "VHOST-FAIL $1: $2"; }

# The unit serial number of a block device's SCSI device: VPD page 0x80 (byte 3 is the
# length of the serial that follows the 4-byte header), spaces and NULs trimmed.
serial_of() { # sysfs block directory
  f=$1/device/vpd_pg80
  [ -r "$f" ] || return 1
  len=$(od -An -tu1 -j3 -N1 "$f" 2>/dev/null | tr -d ' ')
  [ -n "$len" ] || return 1
  tail -c +5 "$f" | head -c "$len" | tr -d '\000' | sed 's/^ *//;s/ *$//'
}

# The block device (sda, sr0, ...) whose serial is SERIAL, if any.
find_serial() {
  for b in /sys/block/sd* /sys/block/sr*; do
    [ -d "$b" ] || continue
    [ "$(serial_of "$b")" = "$1" ] && { basename "$b"; return 0; }
  done
  return 1
}

# Wait up to SECS for the device with SERIAL; prints its name.
wait_serial() { # serial secs
  end=$(($(date +%s) + $2))
  while [ "$(date +%s)" -lt "$end" ]; do
    find_serial "$1" && return 0
    sleep 0.5
  done
  return 1
}

trim() { sed 's/ *$//' "$1" 2>/dev/null; }

# Identity: vendor and model from INQUIRY (sysfs), serial from VPD page 0x80.
check_identity() { # name dev vendor product serial
  v=$(trim "/sys/block/$2/device/vendor")
  m=$(trim "/sys/block/$2/device/model")
  s=$(serial_of "/sys/block/$2")
  if [ "$v" = "$3" ] && [ "$m" = "$4" ] && [ "$s" = "$5" ]; then
    pass "identity-$1" "$2 vendor=$v model=$m serial=$s"
  else
    failed "identity-$1" "$2 vendor='$v' model='$m' serial='$s', expected '$3' '$4' '$5'"
  fi
}

# The pattern both sides compute: `yes WORD | head -c 65536`.
pattern_word=$(param pattern)
pat_block=$(param pat_block)   # offset in 64 KiB blocks
yes "$pattern_word" | head -c 65536 >/tmp/pat

# The LUNs of the boot.
d0=$(wait_serial "$(param disk0_serial)" 90) || fail "no disk with serial $(param disk0_serial): $(ls /sys/block)"
cd0=$(wait_serial "$(param cd0_serial)" 30) || cd0=""
echo "GUEST-READY disk0=$d0 cd0=$cd0"

# a. identity
check_identity disk0 "$d0" "$(param disk0_vendor)" "$(param disk0_product)" "$(param disk0_serial)"
if [ -n "$cd0" ]; then
  check_identity cd0 "$cd0" "$(param cd0_vendor)" "$(param cd0_product)" "$(param cd0_serial)"
  case "$cd0" in
    sr*) pass cd0-type "$cd0 is a CD-ROM (sr)" ;;
    *) failed cd0-type "$cd0 is not a CD-ROM" ;;
  esac
else
  failed identity-cd0 "no device with serial $(param cd0_serial); block devices: $(ls /sys/block | tr '\n' ' ')"
fi

# b. raw O_DIRECT round trip at a known offset; the host then reads the backing file.
rm -f /tmp/back
if dd if=/tmp/pat of="/dev/$d0" bs=65536 seek="$pat_block" count=1 oflag=direct 2>/tmp/dd.err &&
   dd if="/dev/$d0" of=/tmp/back bs=65536 skip="$pat_block" count=1 iflag=direct 2>>/tmp/dd.err &&
   cmp -s /tmp/pat /tmp/back; then
  pass direct-io "64 KiB at block $pat_block written and read back with O_DIRECT"
else
  failed direct-io "$(tr '\n' ' ' </tmp/dd.err)"
fi
echo "VHOST-STEP direct-io-written"

# c. file system round trip on the first fs_kib KiB of disk0 (the pattern lies beyond).
fs_text="vhost fs round trip $(param disk0_serial)"
if mke2fs -q -F "/dev/$d0" "$(param fs_kib)" >/tmp/fs.err 2>&1 &&
   mount -t ext4 "/dev/$d0" /mnt 2>>/tmp/fs.err &&
   { echo "$fs_text"; yes "$pattern_word" | head -n 2000; } >/mnt/roundtrip.txt &&
   sync && umount /mnt && mount -t ext4 "/dev/$d0" /mnt 2>>/tmp/fs.err &&
   [ "$(head -n 1 /mnt/roundtrip.txt)" = "$fs_text" ] &&
   [ "$(wc -l </mnt/roundtrip.txt)" -eq 2001 ] && umount /mnt; then
  pass fs "ext2 on $d0: a file written, unmounted, mounted again and read back"
else
  umount /mnt 2>/dev/null
  failed fs "$(tr '\n' ' ' </tmp/fs.err)"
fi
echo "VHOST-STEP fs-written"

# d. hotplug: the host adds a LUN with serial hp_serial, then removes it.
echo "VHOST-STEP hotplug-add"
if hp=$(wait_serial "$(param hp_serial)" 60); then
  pass hotplug-add "$hp appeared with serial $(param hp_serial)"
  check_identity hp "$hp" "$(param hp_vendor)" "$(param hp_product)" "$(param hp_serial)"
  if dd if="/dev/$hp" of=/dev/null bs=65536 count=4 iflag=direct 2>/dev/null; then
    pass hotplug-read "256 KiB read from $hp"
  else
    failed hotplug-read "a read of $hp failed"
  fi
  echo "VHOST-STEP hotplug-remove"
  end=$(($(date +%s) + 60))
  while [ -e "/sys/block/$hp" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.5; done
  if [ -e "/sys/block/$hp" ]; then
    failed hotplug-remove "$hp still there after 60 s"
  else
    pass hotplug-remove "$hp is gone"
  fi
else
  failed hotplug-add "no device with serial $(param hp_serial) within 60 s: $(ls /sys/block | tr '\n' ' ')"
  echo "VHOST-STEP hotplug-remove"
fi

# e. capacity change: the host grows disk0 to grow_sectors (512-byte sectors).
old=$(cat "/sys/block/$d0/size")
want=$(param grow_sectors)
echo "VHOST-STEP capacity old=$old"
end=$(($(date +%s) + 60))
while [ "$(cat "/sys/block/$d0/size")" = "$old" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.5; done
new=$(cat "/sys/block/$d0/size")
if [ "$new" = "$want" ]; then
  pass capacity "$d0 grew from $old to $new sectors"
else
  failed capacity "$d0 has $new sectors (was $old), expected $want"
fi

# f. reconnect: read the pattern in a loop while the host kills and restarts the
# backend; each read may take the kernel's error handling (timeouts, retries). The loop
# runs reconnect_secs, then on until a read succeeds (at most 3 times as long).
if [ "$(param reconnect)" = 1 ]; then
  secs=$(param reconnect_secs)
  start=$(date +%s)
  n=0; bad=0; last=none
  echo "VHOST-STEP reconnect"
  while :; do
    now=$(date +%s)
    [ $((now - start)) -ge "$secs" ] && [ "$last" = ok ] && break
    [ $((now - start)) -ge $((3 * secs)) ] && break
    n=$((n + 1))
    rm -f /tmp/r
    if timeout 120 dd if="/dev/$d0" of=/tmp/r bs=65536 skip="$pat_block" count=1 iflag=direct 2>/dev/null; then
      if cmp -s /tmp/pat /tmp/r; then last=ok; else last=bad; bad=$((bad + 1)); fi
    else
      last=fail
    fi
    echo "VHOST-READ $last $n"
    sleep 0.5
  done
  if [ "$last" = ok ] && [ "$bad" = 0 ]; then
    pass reconnect-guest "$n reads, the last one good, none with wrong data"
  else
    failed reconnect-guest "$n reads, the last $last, $bad with wrong data"
  fi
else
  echo "VHOST-SKIP reconnect: $(param skip_why | tr _ ' ')"
fi

echo "VHOST-DONE"
while :; do sleep 3600; done
