# Device timeouts (sourced by init). LUN 0: vdisk_blockio over a scsi_debug disk that,
# once scstd runs, ignores every command (opts=4 with every_nth=1): each times out,
# the SCSI midlayer's error handling aborts, retries and resets, and finally takes the
# device offline, failing the I/O. LUN 1: vdisk_fileio on a tmpfs file, which must be
# served all the while.
insmod /lib/modules/scsi_debug.ko dev_size_mb=16 || fail "insmod scsi_debug"
for _ in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done
[ -b /dev/sda ] || fail "scsi_debug made no /dev/sda"
# Seconds before a command counts as timed out (the default is 30).
echo 1 >/sys/block/sda/device/timeout
truncate -s 16M /tmp/healthy.img
echo 1 >/sys/bus/pseudo/drivers/scsi_debug/every_nth
echo 4 >/sys/bus/pseudo/drivers/scsi_debug/opts
run_scstd /guest/device-timeout.conf --state-dir /run/scst
