"""Restore through a shaped WAN link (bench/wan_proxy.py), backupctl against restic.

    .venv/bin/python bench/restore_wan.py DATA_DIR [--rtt-ms 50 --down-mbit 100] [--runs 1]

Both tools back up DATA_DIR to a moto_server on loopback directly (unshaped: the upload
side is measured elsewhere), then restore it in full, and one file of it, through the
shaping proxy in front of the same server. Printed per restore: wall time, bytes and
requests that crossed the link, and the link's use (bytes down x 8 / wall / cap).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from wan_proxy import WanProxy  # noqa: E402  (bench/wan_proxy.py)

from tests.support import s3server  # noqa: E402

PASSWORD = "benchmark passphrase"
BACKUPCTL = os.environ.get("BENCH_BACKUPCTL", os.path.join(os.path.dirname(sys.executable), "backupctl"))


def run(command: list[str], env: dict) -> float:
    started = time.monotonic()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode()[-1500:]}")
    return time.monotonic() - started


def backupctl_config(work: str, data: str, s3, endpoint: str) -> str:
    path = os.path.join(work, f"backupctl-{endpoint.rsplit(':', 1)[1]}.toml")
    with open(path, "w") as handle:
        handle.write(f'[agent]\nstate_dir = "{work}/state"\n[source]\npaths = ["{data}"]\ndatabases = ["*.db"]\n'
                     f'database_chunk_size = 32768\n[repositories.main]\nurl = "s3://{s3.plain_bucket}/backupctl"\n'
                     f'endpoint = "{endpoint}"\nregion = "{s3.region}"\naddressing = "path"\n')
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--rtt-ms", type=float, default=50)
    parser.add_argument("--down-mbit", type=float, default=100)
    parser.add_argument("--up-mbit", type=float, default=20)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    data = os.path.abspath(args.data)
    one_file = next(os.path.join(d, f) for d, _s, files in sorted(os.walk(data)) for f in sorted(files))
    work = tempfile.mkdtemp(prefix="restore-wan-")
    s3 = s3server.start()
    host, port = s3.url.rsplit("//", 1)[1].split(":")
    proxy = WanProxy((host, int(port)), rtt_ms=args.rtt_ms, down_mbit=args.down_mbit, up_mbit=args.up_mbit).start()
    try:
        env = {**os.environ, **s3.env(), "BACKUPCTL_PASSPHRASE": PASSWORD, "RESTIC_PASSWORD": PASSWORD,
               "RESTIC_CACHE_DIR": os.path.join(work, "restic-cache")}
        direct, shaped = backupctl_config(work, data, s3, s3.url), backupctl_config(work, data, s3, proxy.url)
        run([BACKUPCTL, "--config", direct, "init"], env)
        run([BACKUPCTL, "--config", direct, "backup"], env)
        restic_direct = f"s3:{s3.url}/{s3.plain_bucket}/restic"
        restic_shaped = f"s3:{proxy.url}/{s3.plain_bucket}/restic"
        run(["restic", "-r", restic_direct, "init"], env)
        run(["restic", "-r", restic_direct, "backup", data], env)
        cap = args.down_mbit * 1e6 / 8
        print(f"link: {args.down_mbit:g} Mbit/s down, {args.up_mbit:g} up, {args.rtt_ms:g} ms round trip")
        print("| restore | tool | wall s | MB down | requests | link use |")
        print("|---|---|---|---|---|---|")
        for _ in range(args.runs):
            for what, extra_b, extra_r in (("full", [], []), ("one file", ["--include", one_file],
                                                              ["--include", one_file])):
                for tool, command in (
                        ("backupctl", [BACKUPCTL, "--config", shaped, "restore", "latest", *extra_b, "--target"]),
                        ("restic", ["restic", "-r", restic_shaped, "restore", "latest", *extra_r, "--target"])):
                    target = os.path.join(work, "target")
                    shutil.rmtree(target, ignore_errors=True)
                    before = proxy.stats()
                    wall = run([*command, target], env)
                    after = proxy.stats()
                    down = after["bytes_down"] - before["bytes_down"]
                    requests = after["requests_total"] - before["requests_total"]
                    print(f"| {what} | {tool} | {wall:.2f} | {down / 1e6:.1f} | {requests} | "
                          f"{down / wall / cap:.0%} |", flush=True)
                    if os.environ.get("BENCH_WAN_LOG"):
                        for _when, line in proxy.log[-requests:]:
                            print("    ", line[:110], file=sys.stderr)
    finally:
        proxy.stop()
        s3server.stop(s3)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
