#!/usr/bin/env python3
"""Runs every test binary of the workspace, two at a time.

`cargo test` runs test binaries one after another, and nearly every integration test
binary here holds a single test that mostly waits (for leases to expire, servers to
start), so one core idles most of the time. This runs the binaries cargo built in a
pool (WARDEN_TEST_JOBS, default 2), each integration binary with one test thread so
at most two clusters run at once — the same load `--test-threads=2` already gave a
binary with two tests. Longest first when a previous run's durations are known.

Each binary's output goes to target/test-logs/<name>.log; failures are printed at the
end; the exit status is non-zero if any binary failed or ran past its bound.
"""
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

# One binary may not run longer than this (the slowest takes ~3 minutes).
BINARY_TIMEOUT = 20 * 60
TAIL_LINES = 150


def artifacts():
    """(name, executable, cwd, integration) for every test binary cargo builds."""
    out = subprocess.run(
        ["cargo", "test", "--workspace", "--no-run", "--message-format=json"],
        stdout=subprocess.PIPE, check=True, text=True)
    jobs = []
    for line in out.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") != "compiler-artifact" or not m.get("executable"):
            continue
        if not m.get("profile", {}).get("test"):
            continue
        kind = m["target"]["kind"][0]
        package_dir = os.path.dirname(m["manifest_path"])
        name = "%s/%s:%s" % (os.path.basename(package_dir), kind, m["target"]["name"])
        jobs.append((name, m["executable"], package_dir, kind == "test"))
    return jobs


def run(job, log_dir):
    name, exe, cwd, integration = job
    threads = "1" if integration else "2"
    log_path = os.path.join(log_dir, name.replace("/", "_").replace(":", "_") + ".log")
    started = time.monotonic()
    with open(log_path, "w") as log:
        try:
            status = subprocess.run([exe, "--test-threads=" + threads], cwd=cwd,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    timeout=BINARY_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            status = "timeout"
    return name, status, time.monotonic() - started, log_path


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    log_dir = os.path.join(target, "test-logs")
    os.makedirs(log_dir, exist_ok=True)
    times_path = os.path.join(target, "test-durations.json")
    try:
        with open(times_path) as f:
            known = json.load(f)
    except (OSError, ValueError):
        known = {}
    jobs = sorted(artifacts(), key=lambda j: (-known.get(j[0], 0), j[0]))
    workers = int(os.environ.get("WARDEN_TEST_JOBS", "2"))
    print("run_tests: %d test binaries, %d at a time" % (len(jobs), workers), flush=True)
    started = time.monotonic()
    failed = []
    durations = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, j, log_dir) for j in jobs]
        for f in as_completed(futures):
            name, status, secs, log_path = f.result()
            durations[name] = round(secs, 1)
            ok = status == 0
            print("%-8s %-60s %6.1fs" % ("ok" if ok else "FAILED", name, secs), flush=True)
            if not ok:
                failed.append((name, status, log_path))
    with open(times_path, "w") as f:
        json.dump(durations, f, indent=1, sort_keys=True)
    # Doc tests are not separate binaries; cargo runs them (there are few).
    doc = subprocess.run(["cargo", "test", "--workspace", "--doc", "-q"])
    if doc.returncode != 0:
        failed.append(("doc tests", doc.returncode, None))
    for name, status, log_path in failed:
        print("\n===== %s: %s =====" % (name, "ran past %ds" % BINARY_TIMEOUT
                                       if status == "timeout" else "exit %s" % status))
        if log_path:
            with open(log_path, errors="replace") as log:
                print("".join(log.readlines()[-TAIL_LINES:]))
            print("(full output: %s)" % log_path)
    total = time.monotonic() - started
    print("\nrun_tests: %d binaries, %d failed, %.0f s" % (len(jobs), len(failed), total))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
