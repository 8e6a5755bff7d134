#!/bin/bash
# 1:1 messages at an open-loop rate, Herald (one dataplane worker, kernel backend, durable store)
# then Mosquitto (TLS, QoS 1), the same herald-loadgen clients, rate and duration.
# Usage (repository root, release build): [MODE=blocking] [PROCS=1] tests/bench/dataplane/one_to_one_vs_mosquitto.sh RATE [SECONDS]
R=$1; T=${2:-10}
B=${BUILD:-build/rel}  # run from the repository root
D=/var/tmp/h4-11; rm -rf $D; mkdir -p $D
cat > $D/node.json <<J
{"controlplane": {"ipc_socket_path": "$D/ipc.sock", "admin_port": 18080, "public_address": "127.0.0.1", "public_port": 18443},
 "dataplane": {"listen_address": "127.0.0.1", "chat_port": 15222, "workers": 1, "poll_mode": "${MODE:-adaptive}"}}
J
$B/controlplane/herald-controlplane --config $D/node.json --data-dir $D/data > $D/cp.log 2>&1 &
CP=$!; sleep 2
$B/dataplane/herald-dataplane --config $D/node.json --data-dir $D/data > $D/dp.log 2>&1 &
DPID=$!; sleep 3
cpu() { awk '{print $14+$15}' /proc/$1/stat; }   # utime+stime, clock ticks
LG="$B/tools/loadgen/herald-loadgen --connections 1000 --processes ${PROCS:-1} --rate $R --connect-concurrency 100 --json --quiet"
# Warm-up run provisions the accounts; the measured run reuses them.
$LG --target 127.0.0.1:15222 --admin 127.0.0.1:18080 --data-dir $D/data --duration 2 > /dev/null
d0=$(cpu $DPID); c0=$(cpu $CP)
$LG --target 127.0.0.1:15222 --admin 127.0.0.1:18080 --data-dir $D/data --duration $T > $D/herald.json
d1=$(cpu $DPID); c1=$(cpu $CP)
python3 - "$D/herald.json" $((d1-d0)) $((c1-c0)) <<'P'
import json,sys
r=json.load(open(sys.argv[1])); hz=100
dp_s=int(sys.argv[2])/hz; cp_s=int(sys.argv[3])/hz
print(f"herald: acked {r['acked']} delivered {r['delivered']} lost {r['lost']} msgs/s {r['msgs_per_s']:.0f} "
      f"lat p50/p99/p999 us {r['latency_us']['p50']}/{r['latency_us']['p99']}/{r['latency_us']['p999']} "
      f"dp_cpu_s {dp_s:.2f} ({dp_s*1e6/max(1,r['delivered']):.1f} us/msg incl. handshakes) cp_cpu_s {cp_s:.2f} errors {r['errors']}")
P
kill $DPID; wait $DPID; kill $CP; wait $CP
# Mosquitto, same clients and rate.
tools/mosquitto/start-broker --port 18883 --dir $D/mosq > $D/mosq.out 2>&1 &
BR=$!; sleep 1
MP=$(grep -o 'pid [0-9]*' $D/mosq.out | head -1 | awk '{print $2}')
m0=$(cpu ${MP:-$BR})
$LG --protocol mqtt --target 127.0.0.1:18883 --chat-cert $D/mosq/cert.pem --duration $T > $D/mqtt.json
m1=$(cpu ${MP:-$BR})
python3 - "$D/mqtt.json" $((m1-m0)) <<'P'
import json,sys
r=json.load(open(sys.argv[1])); s=int(sys.argv[2])/100
print(f"mosquitto: acked {r['acked']} delivered {r['delivered']} lost {r['lost']} msgs/s {r['msgs_per_s']:.0f} "
      f"lat p50/p99/p999 us {r['latency_us']['p50']}/{r['latency_us']['p99']}/{r['latency_us']['p999']} "
      f"broker_cpu_s {s:.2f} ({s*1e6/max(1,r['delivered']):.1f} us/msg) errors {r['errors']}")
P
kill $BR 2>/dev/null; kill ${MP:-0} 2>/dev/null; wait
