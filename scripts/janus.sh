#!/usr/bin/env bash
# Runs Janus (Debian's `janus` package, `apt-get install janus`) with only the VideoRoom plugin and the plain-HTTP
# API, ready for `streamvis serve --publish STREAM=janus+http://IP:PORT/janus?room=N`:
#
#   scripts/janus.sh IP PORT [ICE_INTERFACE]
#
# Its configuration is written into a fresh temporary folder (removed on exit); the API listens on
# http://IP:PORT/janus; ICE gathers on ICE_INTERFACE only when given. For a LAN or the internet, run Janus with
# its own configuration (STUN, nat_1_1_mapping, HTTPS, an API secret): see the README's "Deployment" section.
# The tests and benchmarks run it in a network namespace (scripts/in_netns.sh): libnice ignores loopback.
# Runs in the foreground; JANUS_DEBUG_LEVEL (0-7, default 4) sets its log level.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 IP PORT [ICE_INTERFACE]" >&2
  exit 2
fi
ip=$1 port=$2 iface=${3:-}
command -v janus > /dev/null || { echo "error: janus is not installed (apt-get install janus)" >&2; exit 2; }
lib=$(dirname "$(dpkg -L janus | grep -m1 '/janus/plugins/libjanus_videoroom.so$')")/..
work=$(mktemp -d)
child=
trap 'rm -rf "$work"' EXIT
# a background job of a script ignores SIGINT: pass the stop on as SIGTERM, which Janus also takes as "stop"
trap 'if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; fi' INT TERM
mkdir -p "$work/plugins" "$work/transports" "$work/empty"
ln -s "$lib/plugins/libjanus_videoroom.so" "$work/plugins/"
ln -s "$lib/transports/libjanus_http.so" "$work/transports/"
cat > "$work/janus.jcfg" <<CFG
general: {
  configs_folder = "$work"
  plugins_folder = "$work/plugins"
  transports_folder = "$work/transports"
  events_folder = "$work/empty"
  loggers_folder = "$work/empty"
  debug_level = ${JANUS_DEBUG_LEVEL:-4}
}
media: { rtp_port_range = "20000-40000" }
CFG
cat > "$work/janus.transport.http.jcfg" <<CFG
general: { http = true, https = false, port = $port, ip = "$ip", base_path = "/janus", json = "plain" }
admin: { admin_http = false }
CFG
echo 'general: { }' > "$work/janus.plugin.videoroom.jcfg"
args=(-F "$work" -C "$work/janus.jcfg" -o -i "$ip")
if [ -n "$iface" ]; then args+=(-E "$iface"); fi
janus "${args[@]}" &
child=$!
wait "$child" || wait "$child"
