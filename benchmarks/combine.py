"""Assemble benchmarks/RESULTS.md from the reports of the individual benchmarks.

Run by `nox -s bench` after `bench_single_node.py` (-> benchmarks/single-node.md),
`bench_cluster.py` (-> benchmarks/cluster.md), `membership/run.py`
(-> benchmarks/membership/results.md), `bench_digest.py`
(-> benchmarks/digest.md) and `bench_healing.py` (-> benchmarks/healing.md);
benchmarks/layout.md holds the before/after figures of `bench_layout.py`,
written by hand (a run measures one version of the code), as do
benchmarks/verified-reads.md (`verified_reads.py`) and benchmarks/scrub.md
(`bench_scrub.py`). A report that is missing is named as
missing, never replaced by older figures.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = [
    ("Single node (issues 2 and 10)", HERE / "single-node.md"),
    ("Three-node cluster (issue 7)", HERE / "cluster.md"),
    ("Layout (issue 7)", HERE / "layout.md"),
    ("Anti-entropy (issue 8)", HERE / "digest.md"),
    ("Client latency while healing (issue 8)", HERE / "healing.md"),
    ("Verified reads (issue 8)", HERE / "verified-reads.md"),
    ("Scrub (issue 8)", HERE / "scrub.md"),
    ("Membership, simulated (issue 3)", HERE / "membership" / "results.md"),
]


def main() -> None:
    out = ["# Rimio benchmark results", "",
           "Assembled by `benchmarks/combine.py` from the reports below; regenerate with "
           "`nox -s bench` (`nox -s bench -- --quick` for a short run of both).", ""]
    for title, path in PARTS:
        if path.exists():
            text = path.read_text(encoding="utf-8").strip()
            # demote the report's own headings by one level under ours
            lines = [("#" + ln) if ln.startswith("#") else ln for ln in text.splitlines()]
            out += [f"# {title}", "", *lines, ""]
        else:
            out += [f"# {title}", "", f"_Not run: {path.relative_to(HERE)} is missing._", ""]
    (HERE / "RESULTS.md").write_text("\n".join(out), encoding="utf-8")


if __name__ == "__main__":
    main()
