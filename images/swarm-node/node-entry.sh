#!/bin/sh
# Entry of a swarm:local node (not --privileged): make /sys and the cgroup mounts writable for the inner
# dockerd, drop the pid file a killed run left on the volume-backed state, then exec dockerd listening on this
# node's own address (never 0.0.0.0) and its local socket. Arguments go to dockerd (labctl passes --dns).
set -eu
mount -o remount,rw /sys
for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts); do
  mount -o remount,bind,rw "$m"
done
rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
addr=$(awk -v h="$(cat /etc/hostname)" '$2 == h { print $1; exit }' /etc/hosts)
if [ -z "$addr" ]; then
  echo "labctl-node-entry: no address for $(cat /etc/hostname) in /etc/hosts" >&2
  exit 1
fi
# --tls=false said explicitly: dockerd 26 otherwise waits ~15 s before listening on TCP without TLS
exec dockerd --host "tcp://$addr:2375" --host unix:///var/run/docker.sock --tls=false "$@"
