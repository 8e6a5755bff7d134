#!/usr/bin/python3
"""heraldctl against a running herald-controlplane: where it finds the node and the key, what
each command does, and its exit status (0 answer, 1 error answer, 2 unreachable or bad usage).

Usage: heraldctl_test.py PATH_TO_herald-controlplane PATH_TO_heraldctl
"""
import json
import os
import subprocess
import sys
import tempfile

from herald_node import Node

BINARY, CTL = sys.argv[1], sys.argv[2]


def ctl(node, *args, env_key=None, key_file=None, data_dir=True):
    cmd = [CTL, "--url", f"http://127.0.0.1:{node.admin_port}"]
    if data_dir:
        cmd += ["--data-dir", node.data_dir]
    if key_file:
        cmd += ["--key-file", key_file]
    env = dict(os.environ)
    env.pop("HERALD_API_KEY", None)
    if env_key is not None:
        env["HERALD_API_KEY"] = env_key
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30, env=env)


def check(result, code, what):
    assert result.returncode == code, (
        f"{what}: exit {result.returncode}, wanted {code}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}")
    return result


def main():
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(BINARY, tmp, "ctl").start()
        try:
            # The key from <data-dir>/admin.key.
            health = json.loads(check(ctl(node, "health"), 0, "health").stdout)
            assert health["status"] in ("ok", "degraded"), health
            node_info = json.loads(check(ctl(node, "node"), 0, "node").stdout)
            assert node_info["version"], node_info
            metrics = check(ctl(node, "metrics"), 0, "metrics").stdout
            assert "# TYPE herald_controlplane_uptime_seconds gauge" in metrics, metrics[:500]

            # keys: create a read key, use it through HERALD_API_KEY and --key-file.
            created = json.loads(check(ctl(node, "keys", "create", "ci", "--scope", "read"), 0,
                                       "keys create").stdout)
            read_key = created["key"]
            check(ctl(node, "health", env_key=read_key, data_dir=False), 0, "read key via env")
            key_file = os.path.join(tmp, "read.key")
            with open(key_file, "w") as f:
                f.write(read_key + "\n")
            check(ctl(node, "health", key_file=key_file), 0, "read key via --key-file")
            # A read key on a write: 1, with the error code on stderr.
            refused = check(ctl(node, "keys", "create", "x", key_file=key_file), 1,
                            "read key writing")
            assert "403 forbidden" in refused.stderr, refused.stderr
            listed = check(ctl(node, "keys", "list"), 0, "keys list").stdout
            assert created["id"] in listed and read_key not in listed, listed
            check(ctl(node, "keys", "revoke", created["id"]), 0, "keys revoke")
            revoked = check(ctl(node, "health", key_file=key_file), 1, "revoked key")
            assert "401 unauthenticated" in revoked.stderr, revoked.stderr
            bad = check(ctl(node, "health", env_key="hk_nope", data_dir=False), 1, "bad key")
            assert "401" in bad.stderr, bad.stderr

            # config: show, set a candidate, commit it, list revisions.
            shown = json.loads(check(ctl(node, "config", "show"), 0, "config show").stdout)
            assert "revision" in json.dumps(shown), shown
            candidate = os.path.join(tmp, "candidate.json")
            with open(candidate, "w") as f:
                json.dump({"limits": {"max_group_members": 64}}, f)
            added = json.loads(check(ctl(node, "config", "set", candidate, "--comment", "ctl test"),
                                     0, "config set").stdout)
            revision = added["revision"]
            check(ctl(node, "config", "commit", str(revision)), 0, "config commit")
            revisions = check(ctl(node, "config", "revisions"), 0, "config revisions").stdout
            assert "ctl test" in revisions, revisions
            with open(candidate, "w") as f:
                json.dump({"limits": {"max_group_members": 1}}, f)  # below the minimum (2)
            invalid = check(ctl(node, "config", "set", candidate), 1, "invalid config")
            assert "invalid_config" in invalid.stderr and "max_group_members" in invalid.stderr, \
                invalid.stderr

            # accounts and groups: unknown ids are errors (1), not crashes.
            check(ctl(node, "accounts", "show", "+15550009999"), 1, "unknown phone")
            check(ctl(node, "groups", "show", "0123456789abcdef"), 1, "unknown group")
            raw = check(ctl(node, "raw", "GET", "/v1/node"), 0, "raw")
            assert json.loads(raw.stdout)["version"], raw.stdout

            # Bad usage and an unreachable node: 2.
            check(ctl(node, "nonsense"), 2, "unknown command")
            unreachable = subprocess.run([CTL, "--url", "http://127.0.0.1:1", "--key-file",
                                          key_file, "health"], capture_output=True, text=True,
                                         timeout=30)
            assert unreachable.returncode == 2, unreachable
            assert "Connection refused" in unreachable.stderr, unreachable.stderr
        except BaseException:
            print(node.log(), file=sys.stderr)
            raise
        finally:
            node.stop()
    print("heraldctl_test: ok")


if __name__ == "__main__":
    main()
