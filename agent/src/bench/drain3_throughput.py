"""Throughput of the PyPI `drain3` package on a file of log messages, one per line.

Used by `warden bench loghub --compare-drain3`, which embeds this file and runs it with
`python3 drain3_throughput.py LINES_FILE [PASSES]`. Each pass mines every line with a fresh
`TemplateMiner()` (drain3's default configuration) and only the loop of
`add_log_message` calls is timed: not reading the file, not importing drain3. Prints one JSON
object:

    {"lines": N, "lines_per_second": R, "lines_per_second_wall": W,
     "pass_seconds": [...], "pass_cpu_seconds": [...], "templates": T, "drain3_version": V}

where R is the rate of the fastest pass by the thread's CPU time (`time.thread_time()`, which
does not count time spent waiting for a core) and W by wall-clock time. Exit status 3 when
drain3 cannot be imported.
"""

import json
import logging
import sys
import time


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print("usage: drain3_throughput.py LINES_FILE [PASSES]", file=sys.stderr)
        return 2
    passes = int(sys.argv[2]) if len(sys.argv) == 3 else 3
    # drain3 logs its configuration on stderr; keep the output to the JSON object.
    logging.disable(logging.CRITICAL)
    try:
        from drain3 import TemplateMiner
    except ImportError as e:
        print(f"cannot import drain3: {e}", file=sys.stderr)
        return 3
    try:
        from importlib.metadata import version

        drain3_version = version("drain3")
    except Exception:  # the version is informative only
        drain3_version = "unknown"
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    pass_seconds = []
    pass_cpu_seconds = []
    templates = 0
    for _ in range(max(passes, 1)):
        miner = TemplateMiner()
        add = miner.add_log_message
        cpu_start = time.thread_time()
        start = time.perf_counter()
        for line in lines:
            add(line)
        pass_seconds.append(time.perf_counter() - start)
        pass_cpu_seconds.append(time.thread_time() - cpu_start)
        templates = len(miner.drain.clusters)
    best = min(pass_seconds)
    best_cpu = min(pass_cpu_seconds)
    print(
        json.dumps(
            {
                "lines": len(lines),
                "lines_per_second": len(lines) / best_cpu if best_cpu > 0 else None,
                "lines_per_second_wall": len(lines) / best if best > 0 else None,
                "pass_seconds": pass_seconds,
                "pass_cpu_seconds": pass_cpu_seconds,
                "templates": templates,
                "drain3_version": drain3_version,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
