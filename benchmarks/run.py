"""``make bench``: every scenario of issue 6 (and issue 8's M, issue 16's V, issue 19's A) in
one go, then a table, a JSON file and a chart.

    python -m benchmarks.run                  # the full run (about 20 minutes on 2 cores)
    python -m benchmarks.run --smoke          # tiny sizes, one run, no official client (tests)
    python -m benchmarks.run --only P2,P3 --runs 5
    python -m benchmarks.run --only M         # the offline model templates (models extra)

Each contender runs in its own process against its own fresh ``fi-evals serve`` process (the
client and the server never share a GIL), one at a time, rounds interleaved: round 1 runs every
contender once, then round 2, and so on, so that slow drift of the machine hits everyone alike.
Every figure is the median of the rounds (``--runs``, at least 3 outside ``--smoke``), and every
ratio is the median of the per-round ratios of two contenders measured in the same round.

Writes ``latest.md``, ``latest.json`` and ``latest.png`` into ``--out`` (default
``benchmarks/results``); exits 1 when a contender crashed (a missed target is a result, not a
crash; ``--strict`` makes it one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import baseline, environment, official_env, report
from benchmarks._server import BenchServer
from benchmarks.scenarios import (
    FULL,
    OFFICIAL_POLL_SLEEP,
    SMOKE,
    Contender,
    Scenario,
    Sizes,
    only,
    scenarios,
    without_baseline,
    without_official,
    without_variants,
)

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
_DRIVER_TIMEOUT = {False: 1800.0, True: 120.0}
_EXTERNAL_TIMEOUT = {False: 3600.0, True: 180.0}


def _say(text: str) -> None:
    print(text, flush=True)


def _env(root: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    for name in ("FI_API_KEY", "FI_SECRET_KEY", "FI_BASE_URL"):  # never reach another server
        env.pop(name, None)
    return env


def _last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON result line")


def _command(c: Contender, server: BenchServer | None, official_python: Path | None) -> list[str]:
    where = [] if server is None else ["--url", server.url, "--api-key", server.api_key,
                                       "--secret-key", server.secret_key,
                                       "--server-pid", str(server.pid)]
    if c.official:
        assert official_python is not None
        return [str(official_python), str(HERE / "official_driver.py"), *where,
                "--mode", c.key.removeprefix("official-"), "--items", str(c.items),
                "--evals", c.evals, "--threads", str(c.workers),
                "--poll-sleep", str(OFFICIAL_POLL_SLEEP)]
    return [sys.executable, "-m", "benchmarks.drivers", c.key, *where, "--items", str(c.items),
            "--evals", c.evals, "--workers", str(c.workers), "--chunk-size", str(c.chunk_size)]


def run_once(c: Contender, server: BenchServer | None, official_python: Path | None,
             smoke: bool) -> dict[str, Any]:
    """One run of one contender (against ``server`` when it needs one)."""
    root = baseline.BASELINE_DIR if c.baseline else ROOT
    try:
        done = subprocess.run(_command(c, server if c.needs_server else None, official_python),
                              cwd=root, env=_env(root), capture_output=True, text=True,
                              timeout=_DRIVER_TIMEOUT[smoke])
        if done.returncode != 0:
            return {"error": f"exit {done.returncode}: {done.stderr.strip()[-1500:]}"}
        return _last_json(done.stdout)
    except (subprocess.TimeoutExpired, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _describe(c: Contender, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"FAILED: {r['error'].splitlines()[-1] if r['error'] else ''}"
    rate = r["outcomes"] / r["seconds"] if r.get("seconds") else 0.0
    extra = ""
    if "requests" in r and r.get("evaluations"):
        extra = f", {r['requests'] / r['evaluations']:.3f} requests/evaluation"
    return (f"{r['items']:,} items in {r['seconds']:.2f} s = {rate:,.0f} evaluations/s"
            f"{extra}")


def run_scenario(scenario: Scenario, runs: int, official_python: Path | None,
                 smoke: bool) -> dict[str, Any]:
    """Every contender of a P1-P3 scenario, ``runs`` interleaved rounds."""
    out: dict[str, Any] = {"title": scenario.title, "server_flags": list(scenario.server_flags),
                           "contenders": {}}
    for c in scenario.contenders:
        out["contenders"][c.name] = {"label": c.label, "role": c.role, "items": c.items,
                                     "evals": c.evals, "workers": c.workers,
                                     "chunk_size": c.chunk_size, "runs": []}
    # --smoke shares one server per scenario (it checks the harness, it measures nothing);
    # a measurement gets a fresh server per run: no run inherits another's database.
    shared = BenchServer(*scenario.server_flags) if smoke else None
    try:
        for round_no in range(1, runs + 1):
            for c in scenario.contenders:
                started = time.monotonic()
                server = (shared if shared is not None and not c.baseline else
                          BenchServer(*scenario.server_flags,
                                      root=str(baseline.BASELINE_DIR) if c.baseline else None)
                          if c.needs_server else None)
                try:
                    result = run_once(c, server, official_python, smoke)
                finally:
                    if server is not None and server is not shared:
                        server.stop()
                result["load_average"] = round(os.getloadavg()[0], 2)
                out["contenders"][c.name]["runs"].append(result)
                _say(f"  {scenario.key} {c.name:<20} run {round_no}/{runs}: "
                     f"{_describe(c, result)} [{time.monotonic() - started:.0f} s with set-up]")
    finally:
        if shared is not None:
            shared.stop()
    return out


def _external_args(scenario: Scenario, sizes: Sizes, large: bool = True) -> list[str]:
    if scenario.key == "P4":
        return ["--sizes", *map(str, sizes.p4 if large else sizes.p4[:1])]
    if scenario.key == "M":
        return ["--items", str(sizes.m_items), "--length", *sizes.m_lengths,
                *(["--batch", str(sizes.m_batch)] if sizes.m_batch else [])]
    if scenario.key == "A":
        return ["--items", str(sizes.a_items)]
    if scenario.key == "V":  # the smoke size opens no browser: it checks the harness only
        return ["--rows", str(sizes.v_rows), *(["--no-browser"] if sizes.v_rows < 10_000
                                                 else [])]
    p5 = sizes.p5
    return ["--burst", str(p5["burst"]), "--service-calls", str(p5["service_calls"]),
            "--service-rate", str(p5["service_rate"]), "--offline", str(p5["offline"])]


def models_missing() -> str | None:
    """Why M cannot run (the ``models`` extra is not importable), or None when it can.

    Checked in a child process: the harness itself never loads onnxruntime.
    """
    try:
        done = subprocess.run([sys.executable, "-c", "import numpy, onnxruntime, tokenizers"],
                              cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"skipped: could not check the models extra ({type(exc).__name__}: {exc})"
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["import failed"])[-1]
    return (f"skipped: the models extra is not installed ({last}); "
            "pip install 'fi-evals[models]'")


class _Done(Exception):
    """The smoke path of P5 produced its result without running the script."""


def _p5_smoke(sizes: Sizes, folder: str) -> dict[str, Any]:
    """P5 at smoke sizes: ``bench_logger.scenario`` for its two busy-worker scenarios.

    The script as a whole spends about 35 s waiting in its "offline" scenario whatever the
    sizes (a 30 s warm-up flush that cannot succeed offline, then a 5 s close), too long for
    the test suite; ``make bench`` runs the whole script.
    """
    sys.path.insert(0, str(HERE))
    try:
        import bench_logger  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(HERE))
    p5 = sizes.p5
    with BenchServer() as server:
        results = [
            bench_logger.scenario("burst", server.url, folder, threads=1,
                                  per_thread=p5["burst"], total_rate=None, settle=30),
            bench_logger.scenario("service", server.url, folder, threads=8,
                                  per_thread=p5["service_calls"] // 8,
                                  total_rate=p5["service_rate"], settle=30)]
    return {"results": results, "note": "smoke: burst and service only"}


def run_external(scenario: Scenario, sizes: Sizes, runs: int, smoke: bool,
                 large_runs: int = 1) -> dict[str, Any]:
    """P4/P5/M/V/A: the area's standalone script, once per round, its JSON collected.

    P4's largest size runs only in the first ``large_runs`` rounds: 1,000,000 items take about
    4 minutes, and three of them would take a third of the time budget of ``make bench``.
    M is skipped (with the reason, not as a crash) when the ``models`` extra is missing.
    V runs once: building its 1,000,000-row run takes about 1.5 minutes, and the script
    measures each request cold and as the median of 5 warm repeats itself.
    """
    assert scenario.external is not None
    script = HERE / scenario.external
    out: dict[str, Any] = {"title": scenario.title, "script": f"benchmarks/{scenario.external}",
                           "args": _external_args(scenario, sizes), "runs": []}
    if not script.exists():
        out["missing"] = f"benchmarks/{scenario.external} is not there yet: not run"
        _say(f"  {scenario.key}: {out['missing']}")
        return out
    if scenario.key == "M" and (reason := models_missing()) is not None:
        out["skipped"] = reason
        _say(f"  {scenario.key}: {reason}")
        return out
    rounds = 1 if scenario.key == "V" else runs
    for round_no in range(1, rounds + 1):
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="fi-evals-bench-") as folder:
            target = Path(folder) / "out.json"
            try:
                if smoke and scenario.key == "P5":
                    result = _p5_smoke(sizes, folder)
                    raise _Done
                args = _external_args(scenario, sizes, round_no <= large_runs)
                done = subprocess.run([sys.executable, str(script), *args, "--json",
                                       str(target)], cwd=ROOT, env=_env(), capture_output=True,
                                      text=True, timeout=_EXTERNAL_TIMEOUT[smoke])
                if target.exists():  # the script exits 1 when its own target fails: still data
                    result = json.loads(target.read_text())
                else:
                    result = {"error": f"exit {done.returncode}: {done.stderr.strip()[-1500:]}"}
            except _Done:
                pass
            except (subprocess.TimeoutExpired, ValueError) as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
        result["load_average"] = round(os.getloadavg()[0], 2)
        out["runs"].append(result)
        _say(f"  {scenario.key} {scenario.external} run {round_no}/{rounds}: "
             f"{report.describe_external(scenario.key, result)} "
             f"[{time.monotonic() - started:.0f} s]")
    return out


def _official(args: argparse.Namespace) -> tuple[Path | None, dict[str, str] | None, str | None]:
    """The official client's python, its versions, or why it is skipped."""
    if args.smoke:
        return None, None, ("skipped in --smoke (no official-client virtualenv in make test); "
                            "make bench runs it")
    if args.no_official:
        return None, None, "skipped (--no-official)"
    folder = Path(args.official_venv).resolve()
    try:
        found = official_env.ensure(folder)
    except RuntimeError as exc:
        return None, None, f"skipped: its virtualenv could not be set up ({exc})"
    return official_env.python_of(folder), found, None


def _baseline(args: argparse.Namespace) -> str | None:
    """Make (or reuse) the baseline worktree; None when it is ready, else why it is skipped."""
    if args.smoke:
        return "skipped in --smoke (make bench measures it)"
    if args.no_baseline:
        return "skipped (--no-baseline)"
    try:
        folder = baseline.ensure()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"skipped: its worktree could not be made ({exc})"
    _say(f"baseline: {baseline.BASELINE_COMMIT} in {folder.relative_to(ROOT)}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 3; smoke 1)")
    parser.add_argument("--p4-large-runs", type=int, default=1,
                        help="rounds of P4 that include the 1,000,000-item size (about 4 "
                             "minutes each; the 10,000-item size runs every round)")
    parser.add_argument("--only", default=None, help="e.g. P1,P3")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--official-venv", default=str(official_env.DEFAULT_DIR))
    parser.add_argument("--no-official", action="store_true")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the baseline worktree's contenders (issue 20's gate)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--from-json", metavar="PATH",
                        help="only rewrite the report from an earlier run's latest.json")
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())["results"]
        analysis = report.analyze(results)
        paths = report.write(results, analysis, Path(args.out))
        _say(report.console(results, analysis))
        _say("rewrote " + ", ".join(str(p) for p in paths))
        return 0
    runs = args.runs or (1 if args.smoke else 3)
    if runs < 3 and not args.smoke:
        _say(f"note: {runs} run(s): figures are not medians of 3")
    sizes = SMOKE if args.smoke else FULL
    keys = set(args.only.upper().split(",")) if args.only else None
    started = time.time()
    official_python, official_versions, official_note = _official(args)
    if official_note:
        _say(f"official client: {official_note}")
    baseline_note = _baseline(args)
    if baseline_note:
        _say(f"baseline: {baseline_note}")
    results: dict[str, Any] = {
        "meta": environment.describe(official_versions, official_note, smoke=args.smoke,
                                     runs=runs, sizes=sizes),
        "scenarios": {}}
    for scenario in only(scenarios(sizes), keys):
        _say(f"{scenario.key}: {scenario.title}")
        if scenario.external:
            results["scenarios"][scenario.key] = run_external(scenario, sizes, runs, args.smoke,
                                                              args.p4_large_runs)
        else:
            if official_python is None:
                scenario = without_official(scenario)
            if baseline_note:
                scenario = without_baseline(scenario)
            if args.smoke:  # one line per driver is enough to check the harness
                scenario = without_variants(scenario)
            results["scenarios"][scenario.key] = run_scenario(scenario, runs, official_python,
                                                              args.smoke)
    results["meta"]["baseline"] = {"commit": baseline.BASELINE_COMMIT,
                                   "folder": str(baseline.BASELINE_DIR.relative_to(ROOT)),
                                   "note": baseline_note}
    results["meta"]["wall_seconds"] = round(time.time() - started, 1)
    results["meta"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    analysis = report.analyze(results)
    paths = report.write(results, analysis, Path(args.out))
    _say("")
    _say(report.console(results, analysis))
    _say("wrote " + ", ".join(str(p) for p in paths))
    crashed = report.crashed(results)
    if crashed:
        _say("crashed: " + "; ".join(crashed))
        return 1
    if args.strict and not all(t["holds"] for t in analysis["targets"] if t["holds"] is not None):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
