#!/usr/bin/python3
"""heraldctl against a running herald-controlplane: where it finds the node and the key, what
each command does (list pages and --all included), its exit status (0 answer, 1 error answer,
2 unreachable or bad usage), and that a config revision records the API key that made it.

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


def register(node, phone):
    """An account through the public API (code from <data-dir>/sms.log); its id."""
    status, _, body = node.public("POST", "/v1/accounts/code", {"phone": phone, "method": "sms"})
    assert status == 200, (status, body)
    code = node.sms_codes()[phone]
    status, _, body = node.public("POST", "/v1/accounts/verify",
                                  {"phone": phone, "code": code, "device_name": "ctl"})
    assert status == 200, (status, body)
    return body["account_id"]


def check_lists(node, tmp):
    """accounts list / groups list: one page, --limit and --after, --all, refused input."""
    accounts = sorted(register(node, f"+1555020000{i}") for i in range(3))
    page = json.loads(check(ctl(node, "accounts", "list"), 0, "accounts list").stdout)
    assert [a["account_id"] for a in page["accounts"]] == accounts and "next" not in page, page
    first = json.loads(check(ctl(node, "accounts", "list", "--limit", "1"), 0,
                             "accounts list --limit 1").stdout)
    assert [a["account_id"] for a in first["accounts"]] == accounts[:1], first
    assert first["next"] == accounts[0], first
    second = json.loads(check(ctl(node, "accounts", "list", "--limit", "2", "--after",
                                  first["next"]), 0, "accounts list --after").stdout)
    assert [a["account_id"] for a in second["accounts"]] == accounts[1:], second
    assert "next" not in second, second
    # --all follows next through pages of one and prints one list, without a next.
    every = json.loads(check(ctl(node, "accounts", "list", "--limit", "1", "--all"), 0,
                             "accounts list --all").stdout)
    assert [a["account_id"] for a in every["accounts"]] == accounts and "next" not in every, every
    assert every["accounts"][0] == page["accounts"][0], (every, page)
    rest = json.loads(check(ctl(node, "accounts", "list", "--limit", "1", "--all", "--after",
                                accounts[0]), 0, "accounts list --all --after").stdout)
    assert [a["account_id"] for a in rest["accounts"]] == accounts[1:], rest
    # The node refuses a bad cursor (1, with its error code); the command line a bad limit (2).
    bad = check(ctl(node, "accounts", "list", "--after", "nope"), 1, "bad cursor")
    assert "invalid_cursor" in bad.stderr and "after" in bad.stderr, bad.stderr
    bad = check(ctl(node, "accounts", "list", "--all", "--after", "nope"), 1, "bad cursor --all")
    assert "invalid_cursor" in bad.stderr, bad.stderr
    check(ctl(node, "accounts", "list", "--limit", "0"), 2, "limit 0")
    check(ctl(node, "accounts", "list", "--limit", "1001"), 2, "limit 1001")

    empty = json.loads(check(ctl(node, "groups", "list", "--all"), 0, "no groups").stdout)
    assert empty == {"groups": []}, empty
    groups = []
    for name in ("red", "blue", "green"):
        created = json.loads(check(ctl(node, "groups", "create", name, accounts[0]), 0,
                                   "groups create").stdout)
        groups.append(created["group_id"])
    groups.sort()
    page = json.loads(check(ctl(node, "groups", "list"), 0, "groups list").stdout)
    assert [g["group_id"] for g in page["groups"]] == groups and "next" not in page, page
    assert all(g["member_count"] == 1 for g in page["groups"]), page
    first = json.loads(check(ctl(node, "groups", "list", "--limit", "2"), 0,
                             "groups list --limit 2").stdout)
    assert [g["group_id"] for g in first["groups"]] == groups[:2], first
    assert first["next"] == groups[1], first
    every = json.loads(check(ctl(node, "groups", "list", "--limit", "1", "--all"), 0,
                             "groups list --all").stdout)
    assert [g["group_id"] for g in every["groups"]] == groups and "next" not in every, every
    bad = check(ctl(node, "groups", "list", "--after", "XYZ"), 1, "bad group cursor")
    assert "invalid_cursor" in bad.stderr, bad.stderr


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
            # The revision's author is the name of the key that made it: admin.key is the
            # bootstrap key; a key created for a person records that person's key name.
            got = json.loads(check(ctl(node, "config", "get", str(revision)), 0,
                                   "config get").stdout)
            assert got["author"] == "bootstrap", got
            ops = json.loads(check(ctl(node, "keys", "create", "ops-alice", "--scope", "admin"),
                                   0, "keys create admin").stdout)
            by_alice = json.loads(check(ctl(node, "config", "set", candidate, env_key=ops["key"],
                                            data_dir=False), 0, "config set by alice").stdout)
            got = json.loads(check(ctl(node, "config", "get", str(by_alice["revision"])), 0,
                                   "config get").stdout)
            assert got["author"] == "ops-alice", got
            with open(candidate, "w") as f:
                json.dump({"limits": {"max_group_members": 1}}, f)  # below the minimum (2)
            invalid = check(ctl(node, "config", "set", candidate), 1, "invalid config")
            assert "invalid_config" in invalid.stderr and "max_group_members" in invalid.stderr, \
                invalid.stderr

            # accounts and groups: unknown ids are errors (1), not crashes.
            check(ctl(node, "accounts", "show", "+15550009999"), 1, "unknown phone")
            check(ctl(node, "groups", "show", "0123456789abcdef"), 1, "unknown group")
            check_lists(node, tmp)
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
