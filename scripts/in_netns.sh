#!/usr/bin/env bash
# Runs a command in the network namespace it is started in (`unshare -n scripts/in_netns.sh CMD...`), after
# bringing up lo and a veth pair, 10.77.0.1 <-> 10.77.0.2: libnice-based peers (GStreamer, Janus) ignore loopback,
# and nothing here may use the machine's own addresses. Everything in it is gone when CMD ends.
set -euo pipefail
ip link set lo up
ip link add sv0 type veth peer name sv1
ip addr add 10.77.0.1/24 dev sv0
ip addr add 10.77.0.2/24 dev sv1
ip link set sv0 up
ip link set sv1 up
exec "$@"
