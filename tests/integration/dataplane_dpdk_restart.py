#!/usr/bin/python3
"""herald-dataplane (DPDK backend, a net_memif server port) killed with SIGKILL and restarted in
the middle of a herald-loadgen run in its DPDK client mode: the loadgen keeps its EAL and port,
sees the memif link go down, counts every connection lost (the new dataplane knows none of
them), and reconnects everyone with backoff once the link is back. Its exactly-once checker is
the verdict: lost 0, duplicates 0 over the whole run, messages sent before, across and after the
restart (those to clients that were offline wait in the control plane's store and are delivered
after the reconnect). `--restarts-expected`: a message resent because its connection died
before the ServerAck may show twice across a restart (the dedup window is in the dataplane's
memory, docs/PROTOCOL.md): counted apart as retry_duplicates and printed; `duplicates` (a
message sent once, shown twice) must still be 0.

Also checked: the loadgen saw exactly one link loss that dropped every logged-in connection and
reports how long everyone took to log in again after the link came back; the new dataplane
accepted every connection again and routed messages after the restart; and at its exit the
loadgen reset every connection (RST, paced by ARP round trips so the dataplane handled each
before the port closed): the dataplane holds no session afterwards.

Root only (two DPDK EALs and a memif socket): exits 77 (skipped) otherwise.
Usage: dataplane_dpdk_restart.py <herald-controlplane> <herald-dataplane> <herald-loadgen>
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import herald_node
from dataplane_dpdk_netns import MemifNode, loadgen_verdict, wait_for

CONNECTIONS = 3000
RATE = 1500         # one-to-one messages/s, open loop, for the whole send phase
DURATION_S = 20     # send phase; the kill comes KILL_AFTER_S after everyone logged in
KILL_AFTER_S = 3
STACK_IP = "10.81.0.1"
LOADGEN_IP = "10.81.0.2"


class RestartNode(MemifNode):
    """A MemifNode whose dataplane can be killed and started again on the same config."""

    def __init__(self, controlplane, dataplane, tmp):
        super().__init__(controlplane, dataplane, tmp, "restart", STACK_IP,
                         max_connections=2 * CONNECTIONS, memory_mb=512)

    def kill_and_restart(self):
        """SIGKILL (no goodbye on any connection, as a crash), then the same dataplane again;
        returns once its worker started."""
        started = self.dp_log().count("dataplane.worker.started")
        self.dp.send_signal(signal.SIGKILL)
        self.dp.wait()
        dp_log = open(self.dp_log_path, "a")
        self.dp = subprocess.Popen(
            [self.dataplane, "--config", self.node.config_path, "--data-dir",
             self.node.data_dir], stdout=dp_log, stderr=dp_log)
        wait_for("the restarted dataplane's worker",
                 lambda: self.alive() and
                 self.dp_log().count("dataplane.worker.started") > started)


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("skipped: needs root (two DPDK EALs and a memif socket)")
        return 77
    controlplane, dataplane, loadgen = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        with RestartNode(controlplane, dataplane, tmp) as node:
            try:
                args = [*node.loadgen_memif_args(loadgen, LOADGEN_IP), "--scenario", "one-to-one", "--connections", str(CONNECTIONS),
                        "--rate", str(RATE), "--duration", str(DURATION_S),
                        "--settle-timeout", "60", "--connect-timeout", "60",
                        "--restarts-expected"]
                outcome = {}

                def run():
                    try:
                        outcome["result"] = loadgen_verdict(args, "one-to-one across a restart",
                                                            CONNECTIONS, timeout_s=240)
                    except BaseException as e:  # re-raised in the main thread
                        outcome["error"] = e

                thread = threading.Thread(target=run)
                thread.start()
                # Everyone logged in (each session is one accepted connection), some messages
                # routed: then the crash.
                wait_for("every loadgen connection accepted",
                         lambda: "result" in outcome or "error" in outcome or
                         node.counter("dp.dpdk.transport.accepted") >= CONNECTIONS)
                time.sleep(KILL_AFTER_S)
                before = node.counter("dp.router.messages")
                accepted_before = node.counter("dp.dpdk.transport.accepted")
                if before == 0:
                    raise AssertionError("no message routed before the kill")
                killed_at = time.monotonic()
                node.kill_and_restart()
                print(f"dataplane killed after {before:.0f} messages, its worker up again "
                      f"{time.monotonic() - killed_at:.2f} s later")
                # The new dataplane takes every connection again (the counters segment is the
                # control plane's: it adds the new process's counts to the old one's).
                wait_for("every connection accepted by the new dataplane",
                         lambda: "error" in outcome or
                         node.counter("dp.dpdk.transport.accepted") >=
                         accepted_before + CONNECTIONS)
                thread.join(timeout=300)
                if "error" in outcome:
                    raise outcome["error"]
                r = outcome["result"]
                if r.get("link_downs") != 1:
                    raise AssertionError(f"link_downs {r.get('link_downs')}, wanted 1")
                # Every session was up at the kill (a handshake in progress counts as well).
                if r.get("link_dropped", 0) < CONNECTIONS:
                    raise AssertionError(f"link_dropped {r.get('link_dropped')}")
                if r.get("restart_relogin_s") is None:
                    raise AssertionError("no restart_relogin_s: not everyone came back")
                if r["logins"] < 2 * CONNECTIONS:
                    raise AssertionError(f"logins {r['logins']}, wanted {2 * CONNECTIONS}")
                after = node.counter("dp.router.messages") - before
                # Sending went on after everyone was back: seconds of it, not a tail.
                if after < 2 * RATE:
                    raise AssertionError(f"the new dataplane routed only {after:.0f} messages")
                # The loadgen's exit reset every connection: none is left in the dataplane.
                wait_for("the dataplane's sessions gone after the loadgen's exit",
                         lambda: herald_node.metric(node.counters(), "dp.worker.sessions",
                                                    kind="gauge") == 0)
                resets = node.counter("dp.tcp.rst_received")
                if resets < CONNECTIONS:
                    raise AssertionError(f"dp.tcp.rst_received {resets}: the loadgen's exit did "
                                         "not reset every connection")
                print(f"ok: link down {r['link_outage_s']:.3f} s, {r['link_dropped']} "
                      f"connections dropped, all {CONNECTIONS} logged in again "
                      f"{r['restart_relogin_s']:.3f} s after the link came back; "
                      f"{r['acked']} acked ({r['resent']} resent), lost {r['lost']}, "
                      f"duplicates {r['duplicates']} (retry {r['retry_duplicates']}), "
                      f"{after:.0f} messages routed by the new dataplane")
            except BaseException:
                node.dump_logs()
                raise
            node.finish()
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
