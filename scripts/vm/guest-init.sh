#!/bin/busybox sh
# /init of svcplane's test guest (scripts/lib/vm.ts builds the initramfs around it). Loads the modules the tests
# need, mounts the host's root read-only over 9p under a tmpfs overlay (so the guest sees this machine's node,
# build and tools, and can write without touching the host), runs the command the host left in its run folder,
# prints an exit marker on the console and powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Kernel autoloading runs this (in the initramfs root, whatever the command's chroot): busybox modprobe.
echo /bin/modprobe > /proc/sys/kernel/modprobe
# Busybox modprobe ignores soft dependencies: crc32c first (nf_conntrack, ip_vs, nf_tables, sctp need it).
modprobe crc32c_generic 2>/dev/null
modprobe crc32c-intel 2>/dev/null
for m in $(cat /modules.load); do modprobe "$m" 2>/dev/null || echo "guest: no module $m" >&2; done

mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro hostroot /host || { echo "guest: 9p mount failed"; poweroff -f; }
mount -t tmpfs -o size=70% tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot || { echo "guest: overlay failed"; poweroff -f; }
mount --bind /dev /newroot/dev
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
# cgroup v2 and bpffs, as a systemd host has them: the ebpf mode attaches to a cgroup and pins under /sys/fs/bpf.
mount -t cgroup2 none /newroot/sys/fs/cgroup || echo "guest: no cgroup2" >&2
mount -t bpf bpf /newroot/sys/fs/bpf || echo "guest: no bpffs" >&2
# A fresh /run (network namespaces are mounted there; the host's entries mean nothing here). Not a tmpfs on /tmp:
# the overlay already makes it writable, and a checkout under the host's /tmp (CI clones there) must stay visible.
mount -t tmpfs tmpfs /newroot/run
mkdir -p /newroot/run/netns
ip link set lo up

run=$(sed -n 's/.*svcplane\.run=\([^ ]*\).*/\1/p' /proc/cmdline)
chroot /newroot /bin/sh -c "cd \"\$(cat /var/cache/svcplane-vm/runs/$run/cwd)\" && . /var/cache/svcplane-vm/runs/$run/cmd.sh" </dev/console
rc=$?
echo "@@SVCPLANE-EXIT=$rc@@"
sync
poweroff -f
