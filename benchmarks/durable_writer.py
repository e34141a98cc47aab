"""The baseline's durable writes in a process of their own, on cue, so strace can count them.

`bench_single_node.py` runs it as a subprocess with ``--dir``. It prints ``ready``,
then for each command line on stdin — ``<name-prefix> <size> <count>`` — does
`count` durable writes of `size` bytes (temp file, fsync, rename, fsync the
directory: `bench_single_node.durable_write`) to ``<name-prefix>-<i>`` and prints
``done``. Writing the same prefix twice overwrites. It exits at the end of stdin.
Between ``ready``/``done`` and the next command it makes no system calls but the
blocking read of stdin, so a strace window around one command counts that
command's writes only.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from bench_single_node import CHUNK, cycled_body, durable_write


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, required=True, help="directory to write in")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    chunks = [random.Random(1).randbytes(CHUNK), random.Random(2).randbytes(CHUNK)]
    print("ready", flush=True)
    for line in sys.stdin:
        prefix, size, count = line.split()
        for i in range(int(count)):
            durable_write(args.dir, f"{prefix}-{i}", cycled_body(chunks, int(size)))
        print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
