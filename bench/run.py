"""Side-by-side benchmark: backupctl against restic and borg, same data, same machine.

    make bench                               # installs restic and borg (Debian), then runs this
    .venv/bin/python bench/run.py --scale 0.25 --runs 3 [--tools backupctl,restic,borg] [--s3]

For each run: a fresh copy of the dataset (bench/dataset.py), then for each tool:
init, initial backup; one weekly mutation; incremental backup; full restore into an
empty folder; `check --read-data` (restic `check --read-data`, borg `check --verify-data`).
Each step's wall time, CPU time (user+sys of the process tree) and peak RSS come from
wait4(2); bytes stored from the repository folder. Medians over the runs, and the ratio
backupctl/peer, are printed as Markdown. `--s3` runs backupctl and restic against a
moto_server on loopback (borg has no S3 backend). `--files 20000,200000` measures peak
RSS of a backup and of a restore against file count instead. `--restore-again` adds a
restore into the folder where the full restore was just deleted (same file system).
`--dataset smallfiles` runs the same steps on 100,000 letters of 0.4-8 KiB in 1,000 folders
(`--files-count` to change it), whose weekly mutation rewrites 1 % of them (bench/dataset.py).

`--wan fibre` (100 Mbit/s down, 20 up, 50 ms round trip) or `--wan gigabit` (1000/1000,
50 ms) puts bench/wan_proxy.py between both tools and moto_server (implies --s3) and adds a
one-file restore; each step then reports the bytes each way and the requests through the
proxy, and the throughput as a fraction of the link's cap in the step's main direction.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from weekly_floor import weekly_floor  # noqa: E402  (bench/ is the script's own folder)

PASSWORD = "benchmark passphrase"
DATABASE_CHUNK_SIZE = 32768  # --database-chunk-size
DATASET = "practice"  # --dataset
BACKUPCTL = os.path.join(os.path.dirname(sys.executable), "backupctl")  # --backupctl
STEPS = ("initial backup", "weekly backup", "full restore", "check --read-data")
WAN_STEPS = ("initial backup", "weekly backup", "full restore", "one-file restore", "check --read-data")
WAN = None  # the bench/wan_proxy.py WanProxy both tools talk through (--wan)
VERIFY_UPLOADS = None  # --verify-uploads: backupctl's verify_uploads on S3 (None: its default)
ONE_FILE = os.path.join("scans", "scan-00003.pdf")  # the one-file restore's file, in the dataset
AGAIN = "restore after delete"  # --restore-again: the folder of the previous restore, just emptied


def measure(command: list[str], *, env: dict, cwd: str | None = None) -> dict:
    # Flush dirty pages first, untimed: otherwise the tool measured right after another
    # one's writes pays for their writeback (the first tool of each step, always ours).
    os.sync()
    traffic = WAN.stats() if WAN is not None else None
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed ({code}): {stderr[-2000:]}")
    result = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}
    if traffic is not None:
        after = WAN.stats()
        result.update(up=after["bytes_up"] - traffic["bytes_up"], down=after["bytes_down"] - traffic["bytes_down"],
                      requests={m: n - traffic["requests"].get(m, 0) for m, n in after["requests"].items()
                                if n - traffic["requests"].get(m, 0)})
    return result


def du(path: str) -> int:
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except FileNotFoundError:
                pass
    return total


def count_files(path: str) -> int:
    return sum(len(files) for _directory, _dirs, files in os.walk(path))


class Tool:
    name = ""

    def __init__(self, work: str, data: str, s3=None) -> None:
        self.work = work
        self.data = data
        self.repo = os.path.join(work, f"repo-{self.name}")
        self.s3 = s3
        self.env = {**os.environ}

    def stored(self) -> int:
        if self.s3 is not None:
            client = self.s3.client()
            total = 0
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.s3.plain_bucket,
                                                                         Prefix=self.name):
                total += sum(item["Size"] for item in page.get("Contents", []))
            return total
        return du(self.repo)


class Backupctl(Tool):
    name = "backupctl"

    def __init__(self, work, data, s3=None) -> None:
        super().__init__(work, data, s3)
        self.bin = BACKUPCTL
        self.config = os.path.join(work, "backupctl.toml")
        url = f"file://{self.repo}"
        extra = ""
        if s3 is not None:
            url = f"s3://{s3.plain_bucket}/{self.name}"
            extra = f'endpoint = "{s3.url}"\nregion = "{s3.region}"\naddressing = "path"\n'
            if VERIFY_UPLOADS:
                extra += f'verify_uploads = "{VERIFY_UPLOADS}"\n'
            self.env.update(s3.env())
        with open(self.config, "w") as handle:
            handle.write(f'[agent]\nstate_dir = "{work}/state-backupctl"\n[source]\npaths = ["{data}"]\n'
                         f'databases = ["*.db"]\ndatabase_chunk_size = {DATABASE_CHUNK_SIZE}\n'
                         f'[repositories.main]\nurl = "{url}"\n{extra}')
        self.env["BACKUPCTL_PASSPHRASE"] = PASSWORD

    def _run(self, *args: str) -> dict:
        return measure([self.bin, "--config", self.config, *args], env=self.env)

    def init(self): return self._run("init")
    def backup(self): return self._run("backup")
    def restore(self, target): return self._run("restore", "latest", "--target", target)
    def restore_one(self, target, path): return self._run("restore", "latest", "--target", target,
                                                          "--include", path.lstrip("/"))
    def check(self): return self._run("check", "--read-data")


class Restic(Tool):
    name = "restic"

    def __init__(self, work, data, s3=None) -> None:
        super().__init__(work, data, s3)
        self.env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=os.path.join(work, "cache-restic"))
        self.location = self.repo
        if s3 is not None:
            self.location = f"s3:{s3.url}/{s3.plain_bucket}/{self.name}"
            self.env.update(s3.env())

    def _run(self, *args: str) -> dict:
        return measure(["restic", "-r", self.location, *args], env=self.env)

    def init(self): return self._run("init")
    def backup(self): return self._run("backup", self.data)
    def restore(self, target): return self._run("restore", "latest", "--target", target)
    def restore_one(self, target, path): return self._run("restore", "latest", "--target", target, "--include", path)
    def check(self): return self._run("check", "--read-data")


class Borg(Tool):
    name = "borg"

    def __init__(self, work, data, s3=None) -> None:
        super().__init__(work, data, s3)
        self.env.update(BORG_PASSPHRASE=PASSWORD, BORG_BASE_DIR=os.path.join(work, "borg-base"),
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        self.archives = 0

    def init(self):
        return measure(["borg", "init", "-e", "repokey-blake2", self.repo], env=self.env)

    def backup(self):
        self.archives += 1
        return measure(["borg", "create", "--compression", "zstd,3", f"{self.repo}::a{self.archives}", self.data],
                       env=self.env)

    def restore(self, target):
        os.makedirs(target, exist_ok=True)
        return measure(["borg", "extract", f"{self.repo}::a{self.archives}"], env=self.env, cwd=target)

    def check(self):
        return measure(["borg", "check", "--verify-data", self.repo], env=self.env)


TOOLS = {"backupctl": Backupctl, "restic": Restic, "borg": Borg}


@contextlib.contextmanager
def fresh_filesystem(work: str, name: str, data_bytes: int, files: int = 0):
    """A restore target on a freshly made ext4 file system (a loop device over a file in
    /dev/shm), when running as root with mkfs.ext4; else a new folder under `work`.

    Restoring into a folder of a file system where thousands of files were just
    deleted measured up to 5 s of kernel time in ext4's inode allocator
    (`recently_deleted`), whichever tool came second: the comparison then measured
    the build machine's history, not the tools. A new file system per restore gives
    each tool the same start, as on the new disk of a real recovery.
    """
    target = os.path.join(work, name)
    os.makedirs(target)
    image = None
    if os.geteuid() == 0 and shutil.which("mkfs.ext4") and os.path.isdir("/dev/shm"):
        image = f"/dev/shm/backupctl-bench-{os.getpid()}-{name}.img"
        with open(image, "wb") as handle:
            handle.truncate(2 * data_bytes + 256 * 2**20)
        # Inodes for every file (ext4's default of one per 16 KiB is short for small files).
        inodes = ["-N", str(2 * files + 10_000)] if files else []
        subprocess.run(["mkfs.ext4", "-q", "-F", *inodes, image], check=True)
        subprocess.run(["mount", "-o", "loop", image, target], check=True)
    try:
        yield target
    finally:
        if image is not None:
            subprocess.run(["umount", target], check=True)
            os.unlink(image)
        shutil.rmtree(target)


def one_run(pristine: str, work: str, tool_names: list[str], s3, again: bool = False) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data = os.path.join(work, "data")
    subprocess.run(["cp", "-a", pristine, data], check=True)
    subprocess.run(["sync"], check=True)
    tools = [TOOLS[name](work, data, s3) for name in tool_names]
    results: dict = {t.name: {} for t in tools}
    for tool in tools:
        tool.init()
        results[tool.name]["initial backup"] = tool.backup()
        results[tool.name]["stored after initial"] = tool.stored()
    subprocess.run([sys.executable, os.path.join(HERE, "dataset.py"), "mutate", data, "--kind", DATASET],
                   check=True)
    # What the week's new content weighs compressed: no tool can add less (bench/weekly_floor.py).
    databases = ("base/cabinet.db",) if DATASET == "practice" else ()
    results["_weekly_floor"] = weekly_floor(pristine, data, databases=databases)["floor"]
    for tool in tools:
        before = tool.stored()
        results[tool.name]["weekly backup"] = tool.backup()
        results[tool.name]["bytes added by weekly"] = tool.stored() - before
    for tool in tools:
        with fresh_filesystem(work, f"restore-{tool.name}", du(data), count_files(data)) as target:
            results[tool.name]["full restore"] = tool.restore(target)
            if again:  # the same file system, where that restore was just deleted
                for entry in os.listdir(target):
                    if entry != "lost+found":
                        shutil.rmtree(os.path.join(target, entry))
                results[tool.name][AGAIN] = tool.restore(target)
    if WAN is not None:
        for tool in tools:
            target = os.path.join(work, f"one-{tool.name}")
            results[tool.name]["one-file restore"] = tool.restore_one(target, os.path.join(data, ONE_FILE))
            shutil.rmtree(target)
    for tool in tools:
        results[tool.name]["check --read-data"] = tool.check()
    results["_dataset_bytes"] = du(data)
    return results


def median(values):
    return statistics.median(values) if values else float("nan")


def report(runs: list[dict], tool_names: list[str], label: str) -> str:
    size = runs[0]["_dataset_bytes"]
    lines = [f"### {label}: dataset {size / 2**20:.0f} MiB, {len(runs)} run(s), medians", "",
             "| step | tool | wall s | MiB/s | CPU s | peak RSS MiB "
             "| ratio vs backupctl (peer time / backupctl time) |",
             "|---|---|---|---|---|---|---|"]
    for step in (*STEPS, AGAIN) if AGAIN in runs[0]["backupctl" if "backupctl" in tool_names else tool_names[0]] \
            else STEPS:
        ours = median([r["backupctl"][step]["wall"] for r in runs]) if "backupctl" in tool_names else None
        for name in tool_names:
            wall = median([r[name][step]["wall"] for r in runs])
            cpu = median([r[name][step]["cpu"] for r in runs])
            rss = median([r[name][step]["rss_mib"] for r in runs])
            throughput = size / wall / 2**20 if step != "weekly backup" else float("nan")
            ratio = "" if name == "backupctl" or ours is None else f"{wall / ours:.2f}x"
            speed = f"{throughput:.0f}" if throughput == throughput else "-"
            lines.append(f"| {step} | {name} | {wall:.2f} | {speed} | {cpu:.2f} | {rss:.0f} | {ratio} |")
    floor = median([r["_weekly_floor"] for r in runs])
    lines += ["", f"Weekly floor (the week's new files and changed database pages, zstd level 3; "
              f"bench/weekly_floor.py): {floor / 2**20:.2f} MiB", "",
              "| tool | stored after initial MiB | bytes added by weekly MiB | added / floor |", "|---|---|---|---|"]
    for name in tool_names:
        stored = median([r[name]["stored after initial"] for r in runs])
        added = median([r[name]["bytes added by weekly"] for r in runs])
        lines.append(f"| {name} | {stored / 2**20:.1f} | {added / 2**20:.1f} | {added / floor:.2f} |")
    return "\n".join(lines)


def wan_report(runs: list[dict], tool_names: list[str], label: str) -> str:
    """Per step: wall time, bytes each way and requests through the proxy, and the
    throughput in the step's main direction as a fraction of that direction's cap."""
    size = runs[0]["_dataset_bytes"]
    caps = {"up": WAN.up.rate, "down": WAN.down.rate}  # bytes per second
    lines = [f"### {label}: dataset {size / 2**20:.0f} MiB, {len(runs)} run(s), medians", "",
             "| step | tool | wall s | MB up | MB down | requests | of the link | peer time / backupctl time |",
             "|---|---|---|---|---|---|---|---|"]
    for step in WAN_STEPS:
        ours = median([r["backupctl"][step]["wall"] for r in runs]) if "backupctl" in tool_names else None
        for name in tool_names:
            cells = [r[name][step] for r in runs]
            wall = median([c["wall"] for c in cells])
            up, down = median([c["up"] for c in cells]), median([c["down"] for c in cells])
            main = "up" if step.endswith("backup") else "down"
            used = (up if main == "up" else down) / wall / caps[main] if caps[main] else float("nan")
            methods = sorted({m for c in cells for m in c["requests"]})
            requests = ", ".join(f"{median([c['requests'].get(m, 0) for c in cells]):.0f} {m}" for m in methods)
            ratio = "" if name == "backupctl" or ours is None else f"{wall / ours:.2f}x"
            lines.append(f"| {step} | {name} | {wall:.2f} | {up / 1e6:.1f} | {down / 1e6:.1f} | {requests} | "
                         f"{used:.0%} {main} | {ratio} |")
    return "\n".join(lines)


def files_rss(counts: list[int], work: str, tool_names: list[str]) -> str:
    lines = ["| files | " + " | ".join(f"{n} peak RSS MiB (backup)" for n in tool_names) + " | "
             + " | ".join(f"{n} peak RSS MiB (restore)" for n in tool_names) + " |",
             "|---|" + "---|" * 2 * len(tool_names)]
    shutil.rmtree(work, ignore_errors=True)
    for count in counts:
        os.makedirs(work, exist_ok=True)
        work_count = tempfile.mkdtemp(prefix=f"files-{count}-", dir=work)
        data = os.path.join(work_count, "data")
        for i in range(count):
            folder = os.path.join(data, f"d{i // 1000:04d}")
            if i % 1000 == 0:
                os.makedirs(folder)
            with open(os.path.join(folder, f"f{i:07d}.txt"), "wb") as handle:
                handle.write(f"letter {i}\n".encode() * 20)
        row, restored = [], []
        for name in tool_names:
            tool = TOOLS[name](work_count, data)
            tool.init()
            row.append(f"{tool.backup()['rss_mib']:.0f}")
            # A block per file, whatever its size: the file system is sized by the count.
            with fresh_filesystem(work_count, f"restore-{name}", max(du(data), 4096 * count), count) as target:
                restored.append(f"{tool.restore(target)['rss_mib']:.0f}")
        row += restored
        lines.append(f"| {count} | " + " | ".join(row) + " |")
        shutil.rmtree(work_count, ignore_errors=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", default="backupctl,restic,borg")
    parser.add_argument("--workdir", default=os.path.join(HERE, "work"))
    parser.add_argument("--s3", action="store_true", help="backupctl and restic against moto_server on loopback")
    parser.add_argument("--wan", choices=("fibre", "gigabit"),
                        help="through bench/wan_proxy.py: fibre 100/20 Mbit/s, gigabit 1000/1000, 50 ms (implies --s3)")
    parser.add_argument("--verify-uploads", choices=("auto", "read-back", "head"),
                        help="backupctl's verify_uploads on S3 (moto does not check checksums: auto reads back)")
    parser.add_argument("--files", help="comma-separated file counts for the RSS-versus-files measurement")
    parser.add_argument("--database-chunk-size", type=int, default=32768,
                        help="backupctl's [source] database_chunk_size for the dataset's cabinet.db")
    parser.add_argument("--dataset", choices=("practice", "smallfiles"), default="practice",
                        help="smallfiles: 100,000 letters of 0.4-8 KiB in 1,000 folders (--scale ignored)")
    parser.add_argument("--files-count", type=int, default=100_000, help="--dataset smallfiles: how many files")
    parser.add_argument("--restore-again", action="store_true",
                        help="after each full restore, delete it and restore again into the same folder")
    parser.add_argument("--backupctl", default=None,
                        help="the backupctl to measure (another build, e.g. main's venv, for a baseline)")
    args = parser.parse_args()
    global DATABASE_CHUNK_SIZE, DATASET, BACKUPCTL, WAN, VERIFY_UPLOADS
    VERIFY_UPLOADS = args.verify_uploads
    DATASET = args.dataset
    BACKUPCTL = args.backupctl or BACKUPCTL
    DATABASE_CHUNK_SIZE = args.database_chunk_size
    tool_names = [t for t in args.tools.split(",") if t]
    if args.files:
        print(files_rss([int(n) for n in args.files.split(",")], os.path.join(args.workdir, "files"), tool_names))
        return
    if DATASET == "smallfiles":
        pristine = os.path.join(args.workdir, f"pristine-smallfiles-{args.files_count}")
        create = ["--kind", "smallfiles", "--files", str(args.files_count)]
    else:
        pristine = os.path.join(args.workdir, f"pristine-{args.scale}")
        create = ["--scale", str(args.scale)]
    if not os.path.isdir(pristine):
        subprocess.run([sys.executable, os.path.join(HERE, "dataset.py"), "create", pristine, *create], check=True)
    s3 = None
    if args.s3 or args.wan:
        from tests.support import s3server

        s3 = s3server.start()
        tool_names = [t for t in tool_names if t != "borg"]
    if args.wan:
        from urllib.parse import urlparse

        from wan_proxy import PROFILES, WanProxy

        down, up, rtt = PROFILES[args.wan]
        WAN = WanProxy(("127.0.0.1", urlparse(s3.url).port), rtt_ms=rtt, down_mbit=down, up_mbit=up).start()
        s3.url = WAN.url  # both tools' endpoint; bucket creation and `stored` go through it too, uncounted
    try:
        runs = []
        for number in range(args.runs):
            if s3 is not None:  # a fresh bucket per run
                s3.plain_bucket = f"bench-{number}-{os.getpid()}"
                s3.client().create_bucket(Bucket=s3.plain_bucket)
            runs.append(one_run(pristine, os.path.join(args.workdir, "run"), tool_names, s3, args.restore_again))
            print(f"run {number + 1}/{args.runs} done", file=sys.stderr)
        label = "S3 (moto_server on loopback)" if s3 else "Local repositories"
        if WAN is not None:
            label = (f"S3 through bench/wan_proxy.py, {args.wan}: {WAN.down.rate * 8 / 1e6:.0f} Mbit/s down, "
                     f"{WAN.up.rate * 8 / 1e6:.0f} up, {WAN.rtt_s * 1000:.0f} ms round trip")
        if DATASET == "smallfiles":
            label += f", {args.files_count:,} small files"
        print(report(runs, tool_names, label))
        if WAN is not None:
            print()
            print(wan_report(runs, tool_names, label))
    finally:
        if WAN is not None:
            WAN.stop()
        if s3 is not None:
            s3server.stop(s3)


if __name__ == "__main__":
    main()
