#!/usr/bin/python3
"""kill -9 of herald-controlplane under a write load, then restart: every write the node
acknowledged (a 2xx answer) is there afterwards. Three rounds on the same data dir.

Writers: admin API keys created by several threads (each acknowledged key must authenticate
after the restart), and complete registrations over HTTPS (each acknowledged device credential
must still open a session).

Usage: kill9_durability.py PATH_TO_herald-controlplane
"""
import random
import sys
import tempfile
import threading
import time

from herald_node import Node

BINARY = sys.argv[1]
ROUNDS = 3
LOAD_SECONDS = 1.5
KEY_WRITERS = 3


def key_writer(node, admin_key, prefix, acked, stop):
    i = 0
    while not stop.is_set():
        i += 1
        try:
            status, _, body = node.admin("POST", "/v1/api-keys",
                                         {"name": f"{prefix}-{i}", "scope": "read"},
                                         key=admin_key, timeout=5)
        except OSError:
            return  # the node is gone: whatever was not answered was not acknowledged
        if status == 201:
            acked.append(body["key"])


def registration_writer(node, round_no, acked, stop):
    i = 0
    while not stop.is_set():
        i += 1
        phone = f"+1555{round_no:02d}{i:05d}"
        try:
            status, _, _ = node.public("POST", "/v1/accounts/code",
                                       {"phone": phone, "method": "sms"}, timeout=5)
            if status != 200:
                continue
            code = node.sms_codes().get(phone)
            if code is None:
                continue
            status, _, body = node.public("POST", "/v1/accounts/verify",
                                          {"phone": phone, "code": code, "device_name": "t"},
                                          timeout=5)
        except OSError:
            return
        if status == 200:
            acked.append(body["credential"])


def main():
    with tempfile.TemporaryDirectory() as tmp:
        # Registration rate limits per source address would stop the writer early: all the
        # test's requests come from 127.0.0.1.
        node = Node(BINARY, tmp, "kill9").start()
        admin_key = node.admin_key()
        all_keys = []
        all_credentials = []
        try:
            for round_no in range(ROUNDS):
                acked_keys = []
                acked_credentials = []
                stop = threading.Event()
                threads = [threading.Thread(target=key_writer,
                                            args=(node, admin_key, f"r{round_no}w{w}", acked_keys,
                                                  stop))
                           for w in range(KEY_WRITERS)]
                threads.append(threading.Thread(target=registration_writer,
                                                args=(node, round_no, acked_credentials, stop)))
                for t in threads:
                    t.start()
                time.sleep(LOAD_SECONDS + random.random())
                node.kill9()
                stop.set()
                for t in threads:
                    t.join(timeout=30)
                all_keys += acked_keys
                all_credentials += acked_credentials
                print(f"round {round_no}: killed with {len(acked_keys)} keys and "
                      f"{len(acked_credentials)} registrations acknowledged", flush=True)
                assert acked_keys, "the load never got an answer: nothing was tested"

                node.start()
                missing = [k for k in all_keys
                           if node.admin("GET", "/v1/health", key=k)[0] != 200]
                assert not missing, f"{len(missing)} acknowledged API keys lost: {missing[:3]}"
                lost = []
                for credential in all_credentials:
                    status, _, body = node.public("POST", "/v1/sessions",
                                                  {"credential": credential})
                    if status != 200:
                        lost.append((status, body))
                assert not lost, f"{len(lost)} acknowledged registrations lost: {lost[:3]}"
                print(f"round {round_no}: after restart all {len(all_keys)} keys and "
                      f"{len(all_credentials)} credentials work", flush=True)
        except BaseException:
            print(node.log(), file=sys.stderr)
            raise
        finally:
            node.stop()
    print("kill9_durability: ok")


if __name__ == "__main__":
    main()
