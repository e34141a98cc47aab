"""Developer sessions: tests, lint, typecheck, bench."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite; pass pytest options after `--`, e.g. `-- -m "not process"`."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """The seeded chaos suite (tests/sim/test_chaos.py) with more seeds:
    `nox -s chaos -- --seeds 10000`, `--first-seed K` to start elsewhere,
    `--seed S` to replay one; other arguments go to pytest."""
    session.install("-e", ".[test]")
    args = list(session.posargs)
    renamed = {"--seeds": "--chaos-seeds", "--first-seed": "--chaos-first-seed",
               "--seed": "--chaos-seed"}
    args = [renamed.get(a, a) for a in args]
    session.run("pytest", "tests/sim/test_chaos.py", "-q", "-p", "no:cacheprovider", *args)


@nox.session
def divergence(session: nox.Session) -> None:
    """The planted-divergence suite (tests/sim/test_divergence.py, RFC 0014 §7)
    with more seeds: `nox -s divergence -- --seeds 100`, `--seed S` to replay
    one; other arguments go to pytest."""
    session.install("-e", ".[test]")
    renamed = {"--seeds": "--divergence-seeds", "--seed": "--divergence-seed"}
    args = [renamed.get(a, a) for a in session.posargs]
    session.run("pytest", "tests/sim/test_divergence.py", "-q", "-p", "no:cacheprovider",
                "-k", "planted_divergence_converges", *args)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The fuzz tests with many more examples: schemathesis against a live
    node, hypothesis against the config parser. `FUZZ_EXAMPLES` (default 500
    here, 25 in the ordinary suite) is the count per operation or property."""
    session.install("-e", ".[test]")
    examples = os.environ.get("FUZZ_EXAMPLES", "500")
    session.run("pytest", "tests/fuzz", *session.posargs, env={"FUZZ_EXAMPLES": examples})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, written to benchmarks/RESULTS.md.

    The single-node benchmark reports every figure as a ratio to a ceiling
    measured in the same run (a plain-Python durable baseline, a do-nothing
    quart-trio app, the client's loopback limit), with p50/p99 latencies, and
    counts syscalls per PUT with strace when it is installed (the rows say
    "strace not available" otherwise); the membership measurements run in the
    deterministic simulator; the anti-entropy benchmark compares one digest
    exchange with shipping every head; the healing benchmark measures client
    latency while a restarted node catches up. `nox -s bench -- --quick` makes them short.
    """
    session.install("-e", ".[test]")
    quick = [a for a in session.posargs if a == "--quick"]
    session.run("python", "benchmarks/bench_single_node.py", "--out",
                "benchmarks/single-node.md", *session.posargs)
    session.run("python", "benchmarks/bench_cluster.py", "--out", "benchmarks/cluster.md",
                *quick)
    session.run("python", "benchmarks/membership/run.py", "--out",
                "benchmarks/membership/results.md", *quick)
    # 100,000 objects differing in 100 (quick: 20,000 in 20)
    session.run("python", "benchmarks/bench_digest.py", "--out", "benchmarks/digest.md",
                *(["--objects", "20000", "--differ", "20"] if quick else []))
    # client p99 while a restarted node heals a backlog, beside idle
    session.run("python", "benchmarks/bench_healing.py", "--out", "benchmarks/healing.md",
                *quick)
    session.run("python", "benchmarks/combine.py")
