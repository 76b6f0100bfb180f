# Scenario `vhost-bench` (sourced by init; scripts/guest/vhost-bench): sequential 1 MiB
# O_DIRECT reads of the same backing file through two virtio-scsi controllers, side A
# (QEMU's built-in scsi-hd) and side B (vhost-user-scsi from scstd, or a second
# built-in controller when the harness is checked), alternating, several rounds.
#
# A phase reads the whole device `passes` times. First an idle phase (side I, 2 s of
# sleep) lets the host measure what QEMU costs when the guest does nothing.
#
# Console protocol: `BENCH-GO <side> <round>` before a phase (then 0.3 s idle, for the
# host to sample CPU times), `BENCH-DONE <side> <round> <MiB> <centiseconds>` after it
# (then 0.3 s idle), `BENCH-END` at the end.

serial_of() {
  f=$1/device/vpd_pg80
  [ -r "$f" ] || return 1
  len=$(od -An -tu1 -j3 -N1 "$f" 2>/dev/null | tr -d ' ')
  [ -n "$len" ] || return 1
  tail -c +5 "$f" | head -c "$len" | tr -d '\000' | sed 's/^ *//;s/ *$//'
}

wait_serial() { # serial secs
  end=$(($(date +%s) + $2))
  while [ "$(date +%s)" -lt "$end" ]; do
    for b in /sys/block/sd*; do
      [ -d "$b" ] && [ "$(serial_of "$b")" = "$1" ] && { basename "$b"; return 0; }
    done
    sleep 0.5
  done
  return 1
}

# Centiseconds since boot.
now_cs() { sed 's/^\([0-9]*\)\.\([0-9]*\) .*/\1\2/' /proc/uptime; }

mib=$(param mib)
rounds=$(param rounds)
passes=$(param passes)
dev_a=$(wait_serial "$(param a_serial)" 90) || fail "no disk with serial $(param a_serial)"
dev_b=$(wait_serial "$(param b_serial)" 90) || fail "no disk with serial $(param b_serial)"
echo "GUEST-READY A=$dev_a B=$dev_b"

phase() { # side device round
  echo "BENCH-GO $1 $3"
  sleep 0.3
  t0=$(now_cs)
  p=0
  while [ "$p" -lt "$passes" ]; do
    dd if="/dev/$2" of=/dev/null bs=1M count="$mib" iflag=direct 2>/tmp/dd.err ||
      { echo "BENCH-FAILED $1 $3: $(tr '\n' ' ' </tmp/dd.err)"; return 1; }
    p=$((p + 1))
  done
  t1=$(now_cs)
  echo "BENCH-DONE $1 $3 $((mib * passes)) $((t1 - t0))"
  sleep 0.3
}

echo "BENCH-GO I 0"
sleep 2
echo "BENCH-DONE I 0 0 200"

r=1
while [ "$r" -le "$rounds" ]; do
  # Alternate which side goes first, so neither always follows the other.
  if [ $((r % 2)) = 1 ]; then
    phase A "$dev_a" "$r"; phase B "$dev_b" "$r"
  else
    phase B "$dev_b" "$r"; phase A "$dev_a" "$r"
  fi
  r=$((r + 1))
done
echo "BENCH-END"
while :; do sleep 3600; done
