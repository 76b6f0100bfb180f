# Scenario `vhost-reattach` (sourced by init): a VM attaching to a vhost target again
# after the previous VM on that socket was killed (scripts/guest/vhost, check g). It
# reads the pattern the first guest wrote with O_DIRECT, `guest.reads` times (0: until
# the host kills it), and reports each read as `VHOST-READ ok|fail|bad <n>`; with a
# count, `VHOST-PASS|FAIL reattach-guest` and `VHOST-DONE` follow.

serial=$(param disk0_serial)
d0=""
end=$(($(date +%s) + 90))
while [ "$(date +%s)" -lt "$end" ] && [ -z "$d0" ]; do
  for b in /sys/block/sd*; do
    [ -r "$b/device/vpd_pg80" ] || continue
    len=$(od -An -tu1 -j3 -N1 "$b/device/vpd_pg80" | tr -d ' ')
    s=$(tail -c +5 "$b/device/vpd_pg80" | head -c "$len" | tr -d '\000' | sed 's/^ *//;s/ *$//')
    [ "$s" = "$serial" ] && d0=$(basename "$b")
  done
  [ -n "$d0" ] || sleep 0.5
done
[ -n "$d0" ] || fail "no disk with serial $serial: $(ls /sys/block)"
echo "GUEST-READY disk0=$d0"

yes "$(param pattern)" | head -c 65536 >/tmp/pat
reads=$(param reads)
n=0; good=0
while [ "$reads" = 0 ] || [ "$n" -lt "$reads" ]; do
  n=$((n + 1))
  rm -f /tmp/r
  if dd if="/dev/$d0" of=/tmp/r bs=65536 skip="$(param pat_block)" count=1 iflag=direct 2>/dev/null; then
    if cmp -s /tmp/pat /tmp/r; then last=ok; good=$((good + 1)); else last=bad; fi
  else
    last=fail
  fi
  echo "VHOST-READ $last $n"
done
if [ "$good" = "$n" ]; then
  echo "VHOST-PASS reattach-guest: $n reads of the pattern, all good"
else
  echo "VHOST-FAIL reattach-guest: $good of $n reads good"
fi
echo "VHOST-DONE"
while :; do sleep 3600; done
