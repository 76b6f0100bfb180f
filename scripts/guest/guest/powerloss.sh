# Power loss (sourced by init). /dev/vda: an ext4 file system made on the host holding
# lun0.img (vdisk_fileio, write-back: write_through 0) and scstd's state directory
# (APTPL files); /dev/vdb: a raw disk under vdisk_blockio. The host kills QEMU at a
# random moment and boots this again.
mkdir -p /mnt/disk
# A journal replay after the power cut happens here, as on any reboot.
mount -t ext4 /dev/vda /mnt/disk || fail "cannot mount /dev/vda"
mkdir -p /mnt/disk/state
run_scstd /guest/powerloss.conf --state-dir /mnt/disk/state
