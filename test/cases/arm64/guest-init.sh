#!/bin/busybox sh
# PID 1 of the arm64 guest (initramfs) for make-arm64-cases.sh. Runs every case listed in
# /cases/cases.txt once as /cases/<case>/exe, keeps the kernel-written core and the program's
# stdout in /out, tars /out onto the raw virtio disk (/dev/vda) and powers off.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
/bin/busybox mkdir -p /proc /sys /dev /out /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /usr/bin 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "GUEST: init start $(cat /proc/uptime)"
for m in virtio_ring virtio virtio_mmio virtio_blk; do
    insmod /modules/$m.ko || echo "GUEST: insmod $m failed"
done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || echo "GUEST: no /dev/vda!"
{
  echo "uname: $(uname -a)"
  grep -m1 Features /proc/cpuinfo
  echo "core_pattern(before): $(cat /proc/sys/kernel/core_pattern)"
} > /out/guest-info.txt
# this is the guest's own kernel (a throwaway VM), not the host's
echo '/out/core.%e.%p' > /proc/sys/kernel/core_pattern
echo 0 > /proc/sys/kernel/core_uses_pid
ulimit -c unlimited
ulimit -s 1024          # 1 MiB thread stacks: smaller cores
for c in $(cat /cases/cases.txt); do
    echo "GUEST: === run $c"
    ( cd /cases/$c && exec timeout 120 ./exe > /out/$c.stdout 2> /out/$c.stderr )
    rc=$?
    f=$(ls /out/core.* 2>/dev/null | head -n1)
    if [ -n "$f" ]; then mv "$f" /out/$c.core; fi
    echo "$c rc=$rc core=$(ls -l /out/$c.core 2>/dev/null | awk '{print $5}')" | tee -a /out/runs.txt
done
cd /out && tar -cf /dev/vda . && sync
echo "GUEST: tar written, powering off"
poweroff -f
