#!/bin/bash
# Idle authenticated TLS sessions on one dataplane worker (kernel backend): memory per session,
# user space (the dataplane's RSS) and kernel (Slab, both loopback ends; /proc/net/sockstat).
# Usage (repository root, release build): tests/bench/dataplane/idle_sessions.sh [N]
set -u
N=${1:-100000}
B=${BUILD:-build/rel}  # run from the repository root
D=/var/tmp/h4-idle; rm -rf $D; mkdir -p $D
cat > $D/node.json <<J
{"controlplane": {"ipc_socket_path": "$D/ipc.sock", "admin_port": 18080, "public_address": "127.0.0.1", "public_port": 18443},
 "dataplane": {"listen_address": "127.0.0.1", "chat_port": 15222, "workers": 1, "poll_mode": "adaptive"},
 "limits": {"max_connections": 120000}}
J
$B/controlplane/herald-controlplane --config $D/node.json --data-dir $D/data > $D/cp.log 2>&1 &
CP=$!
sleep 2
$B/dataplane/herald-dataplane --config $D/node.json --data-dir $D/data > $D/dp.log 2>&1 &
DPID=$!
sleep 3
rss() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
slab() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
echo "baseline: dp_rss_kb=$(rss $DPID) slab_kb=$(slab)"; grep TCP: /proc/net/sockstat
DP0=$(rss $DPID); S0=$(slab)
$B/tools/loadgen/herald-loadgen --target 127.0.0.1:15222 --admin 127.0.0.1:18080 --data-dir $D/data \
  --scenario idle --connections $N --source-addresses 127.0.0.1-127.0.0.8 --duration 60 \
  --connect-timeout 600 --json > $D/loadgen.json 2> $D/loadgen.err &
LG=$!
# Wait until every session is established on the server side, then sample.
for i in $(seq 1 900); do
  n=$(ss -Htn state established '( sport = :15222 )' | wc -l)
  [ "$n" -ge "$N" ] && break
  sleep 1
done
sleep 10
echo "held: server_established=$(ss -Htn state established '( sport = :15222 )' | wc -l) dp_rss_kb=$(rss $DPID) slab_kb=$(slab)"
grep -E "TCP:|sockets" /proc/net/sockstat
DP1=$(rss $DPID); S1=$(slab)
echo "per session: dp_rss_bytes=$(( (DP1-DP0)*1024/N )) kernel_slab_bytes_both_ends=$(( (S1-S0)*1024/N )) (half: $(( (S1-S0)*512/N )))"
grep -E "dp.session.sessions|dp.transport.connections|dp.transport.shards" <(curl -s -H "Authorization: Bearer $(cat $D/data/admin.key)" http://127.0.0.1:18080/metrics) | head
wait $LG; echo "loadgen exit $?"; cat $D/loadgen.json | head -c 1500; echo
kill $DPID; wait $DPID; echo "dp exit $?"; kill $CP; wait $CP
