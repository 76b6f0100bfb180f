# Device errors (sourced by init). LUN 0: vdisk_blockio over a scsi_debug disk that
# answers reads of guest.medium=START+COUNT (sectors) with MEDIUM ERROR; LUN 1:
# vdisk_blockio over a device-mapper table on /dev/vda with an error target at
# guest.dmerror=START+COUNT (reads and writes fail with EIO); LUN 2: vdisk_fileio on a
# tmpfs file, a device with no faults that must keep being served.
medium=$(param medium); dmerror=$(param dmerror)
[ -n "$medium" ] && [ -n "$dmerror" ] || fail "guest.medium and guest.dmerror are needed"
insmod /lib/modules/scsi_debug.ko dev_size_mb=16 opts=2 \
  medium_error_start="${medium%+*}" medium_error_count="${medium#*+}" || fail "insmod scsi_debug"
for _ in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done
[ -b /dev/sda ] || fail "scsi_debug made no /dev/sda"

sectors=$(blockdev --getsz /dev/vda)
bad=${dmerror%+*}; n=${dmerror#*+}; rest=$((bad + n))
# No udev here: dmsetup makes the node itself.
export DM_DISABLE_UDEV=1
printf '0 %s linear /dev/vda 0\n%s %s error\n%s %s linear /dev/vda %s\n' \
  "$bad" "$bad" "$n" "$rest" "$((sectors - rest))" "$rest" |
  dmsetup create faulty || fail "dmsetup create faulty"
[ -b /dev/mapper/faulty ] || fail "no /dev/mapper/faulty"

truncate -s 16M /tmp/healthy.img
run_scstd /guest/device-errors.conf --state-dir /run/scst
