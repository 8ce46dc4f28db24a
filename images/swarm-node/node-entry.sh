#!/bin/sh
# Entry of a swarm:local node (not --privileged): make /sys and the cgroup mounts writable for the inner
# dockerd, drop the pid file a killed run left on the volume-backed state, wait for the server certificate of
# this node's address (labctl issues it once the node runs and has an address; it lands in /etc/labctl/tls, a
# read-only bind of a directory only this node sees), then exec dockerd listening with TLS and client
# certificate verification on this node's own address (never 0.0.0.0, never plain TCP) and on its local
# socket. Arguments go to dockerd (labctl passes --dns).
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
tls=/etc/labctl/tls
cert="$tls/server-$addr.pem"
key="$tls/server-$addr-key.pem"
waited=0
while [ ! -f "$cert" ]; do  # the key is written before the certificate
  if [ "$waited" -ge 600 ]; then
    echo "labctl-node-entry: no server certificate for $addr in $tls after 60 s (run labctl swarm:local up)" >&2
    exit 1
  fi
  sleep 0.1
  waited=$((waited + 1))
done
exec dockerd --host "tcp://$addr:2376" --host unix:///var/run/docker.sock \
  --tlsverify --tlscacert "$tls/ca.pem" --tlscert "$cert" --tlskey "$key" "$@"
