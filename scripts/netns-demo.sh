#!/usr/bin/env bash
# Two hosts on one machine, linked by a virtio-net card that exists only as PCIe TLPs.
#
#   namespace tlpw-rc-PID                                     namespace tlpw-ep-PID
#   ┌───────────────────────────────┐                          ┌───────────────────────────────┐
#   │ kernel: tap0 10.99.0.1/24     │                          │ kernel: tap0 10.99.0.2/24     │
#   │   ⇅                           │   TLPs over ws:// on a   │   ⇅                           │
#   │ tlpwire rc --tap tap0         │◀──veth pair (10.98.0.x)─▶│ tlpwire ep --backend tap:tap0 │
#   │  (virtio-net driver)          │   or a unix: socket      │  (virtio-net card)            │
#   └───────────────────────────────┘                          └───────────────────────────────┘
#
# Each tlpwire process runs inside its namespace and opens its TAP there: the rc creates its own
# (--tap/--ip), the endpoint's is prepared with `ip tuntap add`, as docker-compose.yml does. The
# PCIe link is WebSocket over a veth pair between the namespaces (the twin of the compose
# network), or with DEMO_LINK=unix a Unix socket, which is reachable across network namespaces.
# Then: ping across, iperf3 both ways (when installed), a file through nc with a sha256 check
# (when netcat-openbsd is installed), a summary, and everything torn down — processes,
# namespaces, temporary files — also on Ctrl-C. Exit 0 only if every check that ran passed.
#
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), iproute2, /dev/net/tun, ping, and tlpwire built
# (npm ci; npm run build). Only private addresses inside the two new namespaces are used.
#
# Environment (all optional):
#   DEMO_LINK=ws|unix     how rc and ep talk (default ws, over the veth pair)
#   DEMO_PING_COUNT=5     echo requests
#   DEMO_IPERF_SECONDS=4  length of each iperf3 run (one each way; 0 skips iperf3)
#   DEMO_NC_MIB=8         size of the nc transfer (0 skips it)
#   DEMO_KEEP=1           keep the logs and captures (rc.pcap, ep.pcap) and print where they are
#   TLPWIRE="cmd …"       how to run tlpwire (default: node bin/tlpwire)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PING_COUNT=${DEMO_PING_COUNT:-5}
IPERF_SECONDS=${DEMO_IPERF_SECONDS:-4}
NC_MIB=${DEMO_NC_MIB:-8}
LINK=${DEMO_LINK:-ws}
KEEP=${DEMO_KEEP:-0}

NS_RC="tlpw-rc-$$"
NS_EP="tlpw-ep-$$"
RC_IP=10.99.0.1
EP_IP=10.99.0.2
# The underlay between the namespaces (ws mode): the compose network's twin.
VETH_RC="tlpw$$a"
VETH_EP="tlpw$$b"
UNDER_RC=10.98.0.1
UNDER_EP=10.98.0.2
PORT=5301

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
fail_early() {
  printf 'netns-demo: %s\n' "$*" >&2
  exit 1
}

# ------------------------------------------------------------------ preflight

[[ $(id -u) -eq 0 ]] || fail_early "needs root (network namespaces and TAP interfaces): run it with sudo"
command -v ip >/dev/null || fail_early "the 'ip' command is missing: apt-get install iproute2"
ip netns list >/dev/null 2>&1 || fail_early "'ip netns' does not work here (no network namespace support?)"
[[ -c /dev/net/tun ]] || fail_early "/dev/net/tun is missing: modprobe tun (in a container: --device /dev/net/tun)"
command -v ping >/dev/null || fail_early "ping is missing: apt-get install iputils-ping"
if [[ -z ${TLPWIRE:-} ]]; then
  command -v node >/dev/null || fail_early "node is missing (Node 20 or newer)"
  [[ -f $ROOT/dist/cli/main.js ]] || fail_early "tlpwire is not built: npm run build (or npm run demo:netns)"
  TLPWIRE="$(command -v node) $ROOT/bin/tlpwire"
fi
[[ -f $ROOT/native/tap/build/Release/tap.node ]] ||
  fail_early "the TAP addon is not built: npm run build:native (needs python3, make and a C compiler)"
case $LINK in ws | unix) ;; *) fail_early "DEMO_LINK must be ws or unix, not '$LINK'" ;; esac
read -r -a TLPWIRE_CMD <<<"$TLPWIRE"

HAVE_IPERF=0
HAVE_NC=0
IPERF_WHY=""
NC_WHY=""
if [[ $IPERF_SECONDS == 0 ]]; then
  IPERF_WHY="DEMO_IPERF_SECONDS=0"
elif command -v iperf3 >/dev/null; then
  HAVE_IPERF=1
else
  IPERF_WHY="iperf3 is not installed (apt-get install iperf3)"
fi
if [[ $NC_MIB == 0 ]]; then
  NC_WHY="DEMO_NC_MIB=0"
elif ! command -v nc >/dev/null; then
  NC_WHY="nc is not installed (apt-get install netcat-openbsd)"
elif ! nc -h 2>&1 | grep -q -- '-N'; then
  NC_WHY="this nc is not netcat-openbsd (no -N to end the transfer; apt-get install netcat-openbsd)"
else
  HAVE_NC=1
fi

# ------------------------------------------------------------------ teardown, whatever happens

TMP=$(mktemp -d /tmp/tlpwire-netns.XXXXXX)
# The terminal, kept aside: a signal may arrive while a function runs with its output redirected.
exec 3>&1 4>&2
PIDS=()
NS_MADE=()
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  exec 1>&3 2>&4
  # Our processes first (each by its PID), so the TAPs close and the links say goodbye.
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 30); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  # Anything else still running inside our namespaces was started by this script.
  for ns in "${NS_MADE[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  done
  wait 2>/dev/null
  for ns in "${NS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null; done
  if [[ $KEEP == 1 ]]; then
    say "logs and captures kept in $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'say "interrupted: tearing down" >&3; exit 130' INT
trap 'say "terminated: tearing down" >&3; exit 143' TERM

in_rc() { ip netns exec "$NS_RC" "$@"; }
in_ep() { ip netns exec "$NS_EP" "$@"; }

# Waits until `cmd…` succeeds; $1 = tries of 0.1 s, $2 = what, rest = the command.
wait_for() {
  local tries=$1 what=$2
  shift 2
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    if ! alive; then
      say "a tlpwire process exited while waiting for $what"
      return 1
    fi
    sleep 0.1
  done
  say "timed out waiting for $what"
  return 1
}
# True while every tlpwire process still runs (so a crash is reported, not waited for).
alive() {
  for pid in "${PIDS[@]:0:2}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}
show_logs() {
  say "--- rc stdout"; cat "$TMP/rc.out" 2>/dev/null
  say "--- rc stderr"; tail -n 20 "$TMP/rc.err" 2>/dev/null
  say "--- ep stderr"; tail -n 20 "$TMP/ep.err" 2>/dev/null
}

# ------------------------------------------------------------------ two hosts

step "namespaces $NS_RC (root complex) and $NS_EP (endpoint)"
ip netns add "$NS_RC" || exit 1
NS_MADE+=("$NS_RC")
ip netns add "$NS_EP" || exit 1
NS_MADE+=("$NS_EP")
in_rc ip link set lo up
in_ep ip link set lo up

if [[ $LINK == ws ]]; then
  ip link add "$VETH_RC" netns "$NS_RC" type veth peer name "$VETH_EP" netns "$NS_EP" || exit 1
  in_rc ip addr add "$UNDER_RC/30" dev "$VETH_RC"
  in_ep ip addr add "$UNDER_EP/30" dev "$VETH_EP"
  in_rc ip link set "$VETH_RC" up
  in_ep ip link set "$VETH_EP" up
  LISTEN_URL="ws://0.0.0.0:$PORT"
  CONNECT_URL="ws://$UNDER_RC:$PORT"
  say "PCIe link: WebSocket over a veth pair ($UNDER_RC <-> $UNDER_EP)"
else
  LISTEN_URL="unix:$TMP/rc.sock"
  CONNECT_URL="unix:$TMP/rc.sock"
  say "PCIe link: Unix socket $TMP/rc.sock"
fi

step "root complex in $NS_RC: tlpwire rc --listen $LISTEN_URL --tap tap0 --ip $RC_IP/24"
(cd "$ROOT" && exec ip netns exec "$NS_RC" "${TLPWIRE_CMD[@]}" rc --listen "$LISTEN_URL" --tap tap0 --ip "$RC_IP/24" \
  --pcap "$TMP/rc.pcap" --log-format json >"$TMP/rc.out" 2>"$TMP/rc.err") &
PIDS+=($!)
if ! wait_for 300 "the rc to listen" grep -q '^listening on' "$TMP/rc.out"; then
  show_logs
  exit 1
fi

step "endpoint in $NS_EP: tap0 $EP_IP/24, tlpwire ep --connect $CONNECT_URL --retry --backend tap:tap0"
# The endpoint's TAP is prepared as an administrator would (docker-compose.yml's ep does the same),
# then the card is bridged to it.
in_ep ip tuntap add dev tap0 mode tap || exit 1
in_ep ip addr replace "$EP_IP/24" dev tap0
in_ep ip link set tap0 up
(cd "$ROOT" && exec ip netns exec "$NS_EP" "${TLPWIRE_CMD[@]}" ep --connect "$CONNECT_URL" --retry --backend tap:tap0 \
  --pcap "$TMP/ep.pcap" --log-format json >"$TMP/ep.out" 2>"$TMP/ep.err") &
PIDS+=($!)
if ! wait_for 300 "the card to be bridged to tap0 in $NS_RC" grep -q 'bridged to tap0' "$TMP/rc.out"; then
  show_logs
  exit 1
fi
grep -E '^virtio-net [0-9a-f:.]+: (mac|bridged)' "$TMP/rc.out" | sed 's/^/  /'
alive || { say "a tlpwire process died"; show_logs; exit 1; }

# ------------------------------------------------------------------ checks

PING_OK=0
PING_TEXT=""
step "ping -c $PING_COUNT $EP_IP (from $NS_RC, through the card)"
in_rc ping -c "$PING_COUNT" -i 0.2 -W 2 "$EP_IP" | tee "$TMP/ping.txt"
LOSS=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' "$TMP/ping.txt")
RTT=$(sed -n 's/^rtt [^=]*= \([^ ]*\) ms.*/\1/p' "$TMP/ping.txt")
RECEIVED=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$TMP/ping.txt")
if [[ $LOSS == 0 ]]; then
  PING_OK=1
  IFS=/ read -r RTT_MIN RTT_AVG RTT_MAX _ <<<"$RTT"
  PING_TEXT="${RECEIVED}/${PING_COUNT} replies, 0% loss, rtt min/avg/max ${RTT_MIN}/${RTT_AVG}/${RTT_MAX} ms"
else
  PING_TEXT="${RECEIVED:-0}/${PING_COUNT} replies, ${LOSS:-100}% loss"
  # Nothing else can work: do not wait for iperf3 and nc to time out.
  [[ $HAVE_IPERF == 1 ]] && HAVE_IPERF=0 && IPERF_WHY="the ping failed"
  [[ $HAVE_NC == 1 ]] && HAVE_NC=0 && NC_WHY="the ping failed"
fi

# Throughput from iperf3's JSON: what the receiver got.
iperf_mbps() {
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    if (r.error) { console.log("error: " + r.error); process.exit(1); }
    const s = r.end && (r.end.sum_received || r.end.sum);
    if (!s) { console.log("error: no result"); process.exit(1); }
    console.log((s.bits_per_second / 1e6).toFixed(1));
  ' "$1" 2>/dev/null || echo "error: unreadable iperf3 output"
}

IPERF_OK=0
IPERF_TEXT="skipped: $IPERF_WHY"
if [[ $HAVE_IPERF == 1 ]]; then
  step "iperf3 TCP, ${IPERF_SECONDS} s each way"
  in_ep iperf3 -s -B "$EP_IP" -p 5201 >"$TMP/iperf3-server.log" 2>&1 &
  PIDS+=($!)
  wait_for 50 "the iperf3 server" bash -c "ip netns exec '$NS_EP' ss -ltn | grep -q ':5201 '"
  in_rc timeout $((IPERF_SECONDS + 30)) iperf3 -c "$EP_IP" -p 5201 -t "$IPERF_SECONDS" -J >"$TMP/iperf3-fwd.json" 2>&1
  FWD=$(iperf_mbps "$TMP/iperf3-fwd.json")
  say "  $RC_IP -> $EP_IP (rc to ep): $FWD Mbit/s"
  in_rc timeout $((IPERF_SECONDS + 30)) iperf3 -c "$EP_IP" -p 5201 -t "$IPERF_SECONDS" -R -J >"$TMP/iperf3-rev.json" 2>&1
  REV=$(iperf_mbps "$TMP/iperf3-rev.json")
  say "  $EP_IP -> $RC_IP (ep to rc): $REV Mbit/s"
  if [[ $FWD != error* && $REV != error* ]]; then
    IPERF_OK=1
    IPERF_TEXT="rc->ep ${FWD} Mbit/s, ep->rc ${REV} Mbit/s (TCP, ${IPERF_SECONDS} s each)"
  else
    IPERF_TEXT="FAILED: rc->ep ${FWD}; ep->rc ${REV}"
  fi
fi

NC_OK=0
NC_TEXT="skipped: $NC_WHY"
if [[ $HAVE_NC == 1 ]]; then
  step "nc: a ${NC_MIB} MiB file from $NS_RC to $NS_EP, sha256 compared"
  head -c $((NC_MIB * 1024 * 1024)) /dev/urandom >"$TMP/send.bin"
  SENT_SUM=$(sha256sum "$TMP/send.bin" | cut -d' ' -f1)
  in_ep timeout 300 nc -l "$EP_IP" 5555 >"$TMP/recv.bin" </dev/null 2>"$TMP/nc-server.log" &
  NC_SERVER=$!
  PIDS+=("$NC_SERVER")
  wait_for 50 "the nc listener" bash -c "ip netns exec '$NS_EP' ss -ltn | grep -q ':5555 '"
  T0=$(date +%s.%N)
  in_rc timeout 300 nc -N "$EP_IP" 5555 <"$TMP/send.bin" 2>"$TMP/nc-client.log"
  wait "$NC_SERVER" 2>/dev/null
  T1=$(date +%s.%N)
  RECV_SUM=$(sha256sum "$TMP/recv.bin" | cut -d' ' -f1)
  RECV_BYTES=$(stat -c %s "$TMP/recv.bin")
  SECS=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }')
  RATE=$(awk -v n="$RECV_BYTES" -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", n * 8 / (b - a) / 1e6 }')
  say "  sent     $SENT_SUM"
  say "  received $RECV_SUM ($RECV_BYTES bytes in $SECS s, $RATE Mbit/s)"
  if [[ $SENT_SUM == "$RECV_SUM" ]]; then
    NC_OK=1
    NC_TEXT="${NC_MIB} MiB in ${SECS} s (${RATE} Mbit/s), sha256 match ${SENT_SUM:0:16}…"
  else
    NC_TEXT="FAILED: sha256 differs ($RECV_BYTES of $((NC_MIB * 1024 * 1024)) bytes arrived)"
  fi
fi

alive || say "warning: a tlpwire process died during the checks"

# ------------------------------------------------------------------ summary

# Stop the two tlpwire processes now, so their last lines (counters) are in the logs.
kill -TERM "${PIDS[@]:0:2}" 2>/dev/null
for _ in $(seq 50); do
  kill -0 "${PIDS[0]}" 2>/dev/null || kill -0 "${PIDS[1]}" 2>/dev/null || break
  sleep 0.1
done
RC_TAP_LINE=$(grep '^tap tap0:' "$TMP/rc.out" | tail -n 1)
count_pcap() {
  # records = (file size - 24-byte header) walked record by record; tshark is not needed
  node -e '
    const b = require("fs").readFileSync(process.argv[1]);
    let o = 24, n = 0;
    while (o + 16 <= b.length) { o += 16 + b.readUInt32LE(o + 8); n++; }
    console.log(n);
  ' "$1" 2>/dev/null || echo "?"
}

verdict() { if [[ $1 == 1 ]]; then echo PASS; elif [[ $2 == skipped* ]]; then echo SKIP; else echo FAIL; fi; }
step "summary"
printf '  %-8s %-4s  %s\n' ping "$(verdict $PING_OK "$PING_TEXT")" "$PING_TEXT"
printf '  %-8s %-4s  %s\n' iperf3 "$(verdict $IPERF_OK "$IPERF_TEXT")" "$IPERF_TEXT"
printf '  %-8s %-4s  %s\n' nc "$(verdict $NC_OK "$NC_TEXT")" "$NC_TEXT"
printf '  %-8s       rc.pcap %s frames, ep.pcap %s frames%s\n' capture "$(count_pcap "$TMP/rc.pcap")" "$(count_pcap "$TMP/ep.pcap")" \
  "$([[ $KEEP == 1 ]] && echo " (in $TMP)" || echo " (DEMO_KEEP=1 keeps them)")"
[[ -n $RC_TAP_LINE ]] && say "  rc       $RC_TAP_LINE"

OK=$PING_OK
[[ $HAVE_IPERF == 1 && $IPERF_OK == 0 ]] && OK=0
[[ $HAVE_NC == 1 && $NC_OK == 0 ]] && OK=0
if [[ $OK == 1 ]]; then
  say ""
  say "netns-demo: PASS"
  exit 0
fi
show_logs
say ""
say "netns-demo: FAIL"
exit 1
