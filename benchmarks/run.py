"""Benchmarks: corpus-scale builds and workspace-scale plans and deploys, as ratios.

Run from the project root: `./dev bench` (or `.venv/bin/python benchmarks/run.py`). Every
figure is a ratio against a baseline measured in the same run, because the machines this runs
on are shared and noisy. Prints a table and writes benchmarks/results.json.

1. Build: the SigmaHQ process_creation corpus (../shared/corpus), cold (fresh process, empty
   cache) without and with KQL validation, and rebuilt with nothing changed, against
   sigma-cli and a plain sequential pySigma loop. Peak memory is the largest sum over the
   process and all its descendants (workers, Node.js) of their proportional set size (PSS:
   a page shared by n processes counts 1/n in each), polled every 20 ms with psutil; the sum
   of resident set sizes, which counts shared pages once per process, is reported beside it.
2. Plan: 500 rules against a workspace emulator answering after 50 ms, against the bare paged
   list through the SDK.
3. Deploy: 500 new rules at the default concurrency against concurrency 1; under a write token
   bucket against the minimum the bucket allows; then again, which must send no write.
4. Many workspaces: plan --all-envs for 1, 5, 10 and 20 emulated workspaces.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

# The tool's own functions, in this process, for the phases a deploy command mixes together.
from deployer.apply import apply_plan
from deployer.config import load_config
from deployer.deployment import open_workspaces, plan_environment, select_environments

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "sigmahq" / "process_creation"
VENV_BIN = Path(sys.executable).parent
TOOL = str(VENV_BIN / "sentinel-deployer")
PIPELINE = "sentinel_asim"
LATENCY_MS = 50
RULES = 500
# Azure's bucket is 200 writes refilled at 10 per second; scaled down so the run stays short.
BUCKET = (100, 25.0)
WORKSPACE_COUNTS = (1, 5, 10, 20)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, load "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "command": "./dev bench",
    }
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as scratch:
        work = Path(scratch)
        if args.corpus.is_dir():
            results["build"] = bench_build(args.corpus, work)
        else:
            print(f"no corpus at {args.corpus}: the build section is skipped", file=sys.stderr)
            results["build"] = {"skipped": f"no corpus at {args.corpus} (--corpus DIR)"}
        rules = write_rules(work / "project", RULES)
        results["workspace"] = bench_workspace(rules, work)
    results["total_s"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(results)
    print(f"\nwritten to {args.out} in {results['total_s']} s", file=sys.stderr)
    return 0


# --- measuring ---------------------------------------------------------------------------


def measure(
    command: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Wall time and peak RSS of the process tree of one command (fresh process)."""
    begin = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peak = {"pss": 0, "rss": 0}
    # CPU seconds each process had used when last seen, by role (the last 20 ms are missed).
    cpu: dict[int, tuple[str, float]] = {}
    done = threading.Event()

    def poll() -> None:
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            pss = rss = 0
            for proc in tree:
                with contextlib.suppress(psutil.Error):
                    info = proc.memory_full_info()
                    pss += info.pss
                    rss += info.rss
                    times = proc.cpu_times()
                    cpu[proc.pid] = (_role(proc, root), times.user + times.system)
            peak["pss"] = max(peak["pss"], pss)
            peak["rss"] = max(peak["rss"], rss)
            done.wait(0.02)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - begin
    done.set()
    watcher.join()
    return {
        "seconds": round(seconds, 3),
        "peak_mb": round(peak["pss"] / 2**20, 1),
        "peak_rss_sum_mb": round(peak["rss"] / 2**20, 1),
        "cpu_s": _cpu_by_role(cpu),
        "exit": process.returncode,
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr": stderr.decode("utf-8", "replace"),
    }


def _role(proc: psutil.Process, root: psutil.Process) -> str:
    if proc.pid == root.pid:
        return "main"
    arguments = proc.cmdline() or ["?"]
    if "node" in Path(arguments[0]).name:
        return "node"
    command = " ".join(arguments)
    return "helper" if "resource_tracker" in command else "workers"


def _cpu_by_role(cpu: dict[int, tuple[str, float]]) -> dict[str, float]:
    roles: dict[str, float] = {}
    for role, seconds in cpu.values():
        roles[role] = round(roles.get(role, 0.0) + seconds, 2)
    return roles


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    begin = time.perf_counter()
    value = step()
    return time.perf_counter() - begin, value


def brief(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in ("stdout", "stderr")}


# --- 1. build at corpus scale ------------------------------------------------------------

PLAIN_PYSIGMA = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sigma.backends.kusto import KustoBackend
    from sigma.collection import SigmaCollection
    from sigma.pipelines.sentinelasim import sentinel_asim_pipeline
    converted = failed = 0
    for path in sorted(Path(sys.argv[1]).glob("*.yml")):
        try:
            rules = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"))
            backend = KustoBackend(sentinel_asim_pipeline())
            backend.convert(rules)
            converted += 1
        except Exception:
            failed += 1
    print(converted, failed)
    """
)


PROFILE = textwrap.dedent(
    """
    import cProfile, io, pstats, sys
    from pathlib import Path
    from deployer.build import BuildRequest, run_build
    from deployer.config import load_config
    config = load_config(None, cwd=Path.cwd())
    request = BuildRequest(paths=(Path(sys.argv[1]),), jobs=1, use_cache=False)
    profile = cProfile.Profile()
    profile.runcall(run_build, config, request, queries=None)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(
        r"deployer/(build|rulebuild|rules|convert|render|validate|analytics)|sigma/(conversion"
        r"/base|rule/rule|types|processing/pipeline)|yaml/constructor|re/__init__", 24
    )
    print(out.getvalue())
    """
)


def bench_build(corpus: Path, work: Path) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    out = work / "out"

    def ours(name: str, *options: str) -> dict[str, Any]:
        project = work / f"build-{name}"
        project.mkdir(exist_ok=True)
        command = [TOOL, "build", str(corpus), "--out", str(out / name), "--format", "json"]
        run = measure([*command, *options], cwd=project)
        if run["exit"] not in (0, 1):
            raise SystemExit(f"build {name} failed: {run['stderr'][-2000:]}")
        return run

    print("build: ours, cold, without KQL validation", file=sys.stderr)
    skip = ours("cold", "--skip-kql")
    print("build: ours, cold, one job", file=sys.stderr)
    one = ours("one-job", "--skip-kql", "--jobs", "1")
    print("build: ours, cold, with KQL validation", file=sys.stderr)
    kql = ours("kql")
    print("build: ours, nothing changed (cache)", file=sys.stderr)
    warm = ours("kql")
    lines = [json.loads(line) for line in kql["stdout"].splitlines() if line.strip()]
    aborting = [
        line["path"]
        for line in lines
        if any("the kusto backend failed on this rule" in e["message"] for e in line["errors"])
    ]
    print("build: sigma-cli", file=sys.stderr)
    sigma_cli, aborting = run_sigma_cli(corpus, work, aborting)
    print("build: plain pySigma loop", file=sys.stderr)
    plain = measure([sys.executable, "-c", PLAIN_PYSIGMA, str(corpus)], cwd=work)
    print("build: where the time goes (cProfile, one process, no KQL)", file=sys.stderr)
    profile = measure([sys.executable, "-c", PROFILE, str(corpus)], cwd=work)

    runs = {
        "rules": len(lines),
        "built": sum(1 for line in lines if line["status"] == "built"),
        "sigma_cli_excluded": [Path(p).name for p in aborting],
        "runs": {
            "ours_cold_no_kql": brief(skip),
            "ours_cold_no_kql_jobs_1": brief(one),
            "ours_cold_kql": brief(kql),
            "ours_rebuild_unchanged": brief(warm),
            "sigma_cli": brief(sigma_cli),
            "plain_pysigma": brief(plain),
        },
        "profile": _profile_rows(profile["stdout"]),
    }
    base = sigma_cli["seconds"]
    runs["ratios"] = {
        "cold_no_kql_vs_sigma_cli": round(skip["seconds"] / base, 3),
        "cold_kql_vs_sigma_cli": round(kql["seconds"] / base, 3),
        "rebuild_vs_cold_kql": round(warm["seconds"] / kql["seconds"], 3),
        "rebuild_vs_cold_no_kql": round(warm["seconds"] / skip["seconds"], 3),
        "cold_no_kql_vs_plain_pysigma": round(skip["seconds"] / plain["seconds"], 3),
        "jobs_default_vs_jobs_1": round(skip["seconds"] / one["seconds"], 3),
    }
    runs["targets"] = {
        "cold_no_kql_vs_sigma_cli <= 0.35": runs["ratios"]["cold_no_kql_vs_sigma_cli"] <= 0.35,
        "cold_kql_vs_sigma_cli <= 1.0": runs["ratios"]["cold_kql_vs_sigma_cli"] <= 1.0,
        "rebuild_vs_cold_kql <= 0.05": runs["ratios"]["rebuild_vs_cold_kql"] <= 0.05,
        "peak_mb_kql < 400": kql["peak_mb"] < 400,
    }
    return runs


def _profile_rows(text: str) -> list[str]:
    """The table rows of a pstats listing, paths shortened to the package."""
    rows = []
    for line in text.splitlines():
        if re.match(r"\s*\d", line) and ("/" in line or "{" in line):
            rows.append(_short_paths(line.strip()))
    return rows


def _short_paths(text: str) -> str:
    """Paths from the package or library folder on, so that no machine's folders show."""
    text = re.sub(r"\S*/(site-packages|lib/python3\.\d+)/", "", text)
    return re.sub(r"\S*/(?=deployer/)", "", text)


def run_sigma_cli(
    corpus: Path, work: Path, aborting: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """sigma-cli on the corpus without the rules it aborts on (outside pySigma's errors)."""
    sigma = str(VENV_BIN / "sigma")
    excluded = list(aborting)
    for _ in range(10):
        folder = work / "sigma-cli-corpus"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        names = {Path(p).name for p in excluded}
        for path in corpus.glob("*.yml"):
            if path.name not in names:
                (folder / path.name).symlink_to(path)
        command = [sigma, "convert", "-s", "-t", "kusto", "-p", PIPELINE, str(folder)]
        run = measure(command, cwd=work)
        if run["exit"] == 0:
            return run, excluded
        found = re.search(r"while converting rule (\S+?\.yml)", run["stderr"])
        if not found:
            raise SystemExit(f"sigma-cli failed: {run['stderr'][-2000:]}")
        excluded.append(found.group(1))
    raise SystemExit("sigma-cli kept aborting")


# --- 2-4. plan and deploy at workspace scale ----------------------------------------------


def write_rules(project: Path, count: int) -> list[Path]:
    """`count` distinct valid rules (made up, so that this section needs no corpus)."""
    rules = project / "rules"
    rules.mkdir(parents=True)
    written = []
    for index in range(count):
        path = rules / f"bench_{index:04d}.yml"
        path.write_text(
            f"title: Benchmark rule {index:04d}\n"
            f"id: {index:08x}-0000-4000-8000-000000000000\n"
            "status: test\n"
            f"description: Made-up rule {index} for the benchmarks.\n"
            "tags:\n    - attack.execution\n    - attack.t1059\n"
            "logsource:\n    category: process_creation\n    product: windows\n"
            "detection:\n    selection:\n"
            f"        Image|endswith: '\\\\tool{index}.exe'\n"
            f"        CommandLine|contains: '--flag-{index}'\n"
            "    condition: selection\n"
            "level: medium\n",
            encoding="utf-8",
        )
        written.append(path)
    return written


class EmulatorProcess:
    """`sentinel-deployer emulator` in its own process, so its work is not the tool's."""

    def __init__(self, work: Path, name: str, *options: str) -> None:
        self.log = work / f"{name}-requests.jsonl"
        command = [TOOL, "emulator", "--in-memory", "--port", "0", "--request-log", str(self.log)]
        self.process = subprocess.Popen(
            [*command, *options], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        assert self.process.stderr is not None
        self.url = self.ca = ""
        for line in self.process.stderr:
            if "emulator at" in line:
                self.url = line.split("emulator at", 1)[1].strip()
            if "REQUESTS_CA_BUNDLE=" in line:
                self.ca = line.split("REQUESTS_CA_BUNDLE=", 1)[1].strip()
                break

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def write_config(project: Path, emulator: EmulatorProcess, workspaces: Sequence[str]) -> Path:
    lines = ['[project]\nname = "bench"\n']
    for name in workspaces:
        lines.append(
            f"[environments.{name}]\n"
            'subscription_id = "00000000-0000-0000-0000-000000000000"\n'
            'resource_group = "bench"\n'
            f'workspace = "{name}"\n'
            f'arm_endpoint = "{emulator.url}"\n'
            'credential = "token"\n'
        )
    path = project / f"bench-{len(workspaces)}-{workspaces[0]}.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def bench_workspace(rules: list[Path], work: Path) -> dict[str, Any]:
    project = rules[0].parent.parent
    fast = EmulatorProcess(work, "latency", "--latency-ms", str(LATENCY_MS))
    bucket = EmulatorProcess(
        work,
        "bucket",
        "--latency-ms",
        str(LATENCY_MS),
        "--write-bucket",
        f"{BUCKET[0]},{BUCKET[1]}",
    )
    env = {"SENTINEL_DEPLOYER_TOKEN": "bench", "REQUESTS_CA_BUNDLE": fast.ca}
    os.environ.update(env)
    results: dict[str, Any] = {"rules": len(rules), "latency_ms": LATENCY_MS}
    try:

        def deploy(emulator: EmulatorProcess, name: str, concurrency: int | None) -> dict[str, Any]:
            """Plan, then apply (timed) at `concurrency` (None: the tool's default)."""
            os.environ["REQUESTS_CA_BUNDLE"] = emulator.ca
            config = load_config(write_config(project, emulator, [name]), cwd=project)
            environments = [
                dataclasses.replace(e, concurrency=concurrency or e.concurrency)
                for e in select_environments(config, [name], False)
            ]
            concurrency = environments[0].concurrency
            with open_workspaces(config, environments) as [(target, workspace)]:
                planned = plan_environment(config, target, workspace, prune=False, queries=None)
                assert planned.plan is not None, "the benchmark rules must all be valid"
                before = len(emulator.requests())
                seconds, entries = timed(
                    lambda: apply_plan(planned.plan, workspace, concurrency=concurrency)
                )
                sent = emulator.requests()[before:]
            outcomes: dict[str, int] = {}
            for entry in entries:
                outcomes[entry.outcome] = outcomes.get(entry.outcome, 0) + 1
            return {
                "seconds": round(seconds, 3),
                "concurrency": concurrency,
                "outcomes": outcomes,
                "writes": sum(1 for r in sent if r["method"] in ("PUT", "DELETE")),
                "throttled": sum(1 for r in sent if r["status"] == 429),
            }

        print("deploy: 500 rules, default concurrency", file=sys.stderr)
        default = deploy(fast, "ws-default", None)
        print("deploy: 500 rules, concurrency 1", file=sys.stderr)
        serial = deploy(fast, "ws-serial", 1)
        print("deploy: the same rules again", file=sys.stderr)
        again = deploy(fast, "ws-default", None)
        print("deploy: under the write token bucket", file=sys.stderr)
        throttled = deploy(bucket, "ws-bucket", None)
        minimum = max(0.0, (len(rules) - BUCKET[0]) / BUCKET[1])
        results["deploy"] = {
            "default": default,
            "concurrency_1": serial,
            "second_deploy": again,
            "bucket": {**throttled, "capacity": BUCKET[0], "per_second": BUCKET[1]},
            "bucket_minimum_s": minimum,
        }

        print("plan: 500 rules, against the bare paged list", file=sys.stderr)
        os.environ["REQUESTS_CA_BUNDLE"] = fast.ca
        results["plan"] = bench_plan(project, fast, "ws-default", work)

        print("plan --all-envs: 1 to 20 workspaces", file=sys.stderr)
        results["many"] = bench_many(project, fast)
    finally:
        fast.stop()
        bucket.stop()
    ratios = {
        "deploy_speedup_vs_concurrency_1": round(
            serial["seconds"] / results["deploy"]["default"]["seconds"], 2
        ),
        "bucket_vs_minimum": round(throttled["seconds"] / minimum, 3) if minimum else None,
        "plan_vs_bare_list": results["plan"]["ratio"],
    }
    results["ratios"] = ratios
    results["targets"] = {
        "deploy_speedup >= 6": ratios["deploy_speedup_vs_concurrency_1"] >= 6,
        "bucket <= 1.15x minimum, none failed": (ratios["bucket_vs_minimum"] or 0) <= 1.15
        and "failed" not in throttled["outcomes"],
        "second deploy sends no write": again["writes"] == 0,
        "plan <= 1.5x bare list": results["plan"]["ratio"] <= 1.5,
        "plan sends one paged list only": results["plan"]["only_list_requests"],
    }
    return results


BARE_LIST = textwrap.dedent(
    """
    import sys
    from azure.core.credentials import AccessToken
    from azure.mgmt.securityinsight import SecurityInsightsMgmtClient
    class Token:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("bench", 2**31)
    client = SecurityInsightsMgmtClient(
        Token(), "00000000-0000-0000-0000-000000000000", base_url=sys.argv[1],
        api_version="2025-12-01", connection_verify=sys.argv[2],
    )
    print(sum(1 for _ in client.alert_rules.list("bench", sys.argv[3])))
    """
)


def bench_plan(project: Path, emulator: EmulatorProcess, name: str, work: Path) -> dict[str, Any]:
    """The plan stage (build from the cache, one paged list, compare) against the bare list,
    in this process; and the plan command against a bare-list script, as fresh processes."""
    config_path = write_config(project, emulator, [name])
    config = load_config(config_path, cwd=project)
    environments = select_environments(config, [name], False)
    with open_workspaces(config, environments) as [(target, workspace)]:
        plan_environment(config, target, workspace, prune=False, queries=None)  # fills the cache
        before = len(emulator.requests())
        plan_s, planned = timed(
            lambda: plan_environment(config, target, workspace, prune=False, queries=None)
        )
        sent = emulator.requests()[before:]
        list_s, listed = timed(workspace.list_rules)
    assert planned.plan is not None and len(listed) >= len(planned.plan.changes) - 1

    env = {"SENTINEL_DEPLOYER_TOKEN": "bench", "REQUESTS_CA_BUNDLE": emulator.ca}
    command = [TOOL, "plan", "--config", str(config_path), "--env", name]
    measure(command, cwd=project, env=env)  # the command's own cache entries (KQL checked)
    plan_command = measure(command, cwd=project, env=env)
    bare = measure(
        [sys.executable, "-c", BARE_LIST, emulator.url, emulator.ca, name], cwd=work, env=env
    )
    return {
        "plan_s": round(plan_s, 3),
        "bare_list_s": round(list_s, 3),
        "ratio": round(plan_s / list_s, 3),
        "command": brief(plan_command),
        "bare_list_script": brief(bare),
        "command_ratio": round(plan_command["seconds"] / bare["seconds"], 3),
        "requests": len(sent),
        # A list (and its next pages) reads .../alertRules; a request per rule, .../alertRules/ID.
        "only_list_requests": all(
            r["method"] == "GET" and r["path"].rstrip("/").lower().endswith("/alertrules")
            for r in sent
        ),
        "note": "the plan's build is served from the build cache (section 1 measures builds)",
    }


def bench_many(project: Path, emulator: EmulatorProcess) -> dict[str, Any]:
    env = {"SENTINEL_DEPLOYER_TOKEN": "bench", "REQUESTS_CA_BUNDLE": emulator.ca}
    rows = []
    for count in WORKSPACE_COUNTS:
        config = write_config(project, emulator, [f"many{i:02d}" for i in range(count)])
        command = [TOOL, "plan", "--config", str(config), "--all-envs"]
        cold = measure(command, cwd=project, env=env)
        warm = measure(command, cwd=project, env=env)
        rows.append(
            {
                "workspaces": count,
                "cold_s": cold["seconds"],
                "cached_s": warm["seconds"],
                "peak_mb": cold["peak_mb"],
                "exit": cold["exit"],
            }
        )
    return {"rows": rows, "note": "empty workspaces; cold: the build cache has no entry yet"}


# --- the table ------------------------------------------------------------------------------


def print_table(results: dict[str, Any]) -> None:
    print(f"\nsentinel-deployer benchmarks, {results['date']} ({results['machine']})")
    build = results["build"]
    if "skipped" in build:
        print(f"\n1. build: skipped, {build['skipped']}")
    else:
        print_build(build)
    print_workspace(results["workspace"])
    print("\ntargets")
    for name, met in {**build.get("targets", {}), **results["workspace"]["targets"]}.items():
        print(f"   {'met   ' if met else 'MISSED'} {name}")


def print_build(build: dict[str, Any]) -> None:
    runs = build["runs"]
    print(f"\n1. build, {build['rules']} rules ({build['built']} build)")
    for name, run in runs.items():
        cpu = ", ".join(f"{role} {seconds:.1f}" for role, seconds in run["cpu_s"].items())
        print(
            f"   {name:28} {run['seconds']:8.2f} s  {run['peak_mb']:7.1f} MB PSS "
            f"({run['peak_rss_sum_mb']:.1f} MB RSS summed)  CPU s: {cpu}"
        )
    for name, value in build["ratios"].items():
        print(f"   {name:40} {value:6.3f}")
    print(f"   sigma-cli given the corpus without: {', '.join(build['sigma_cli_excluded'])}")
    print("   where a sequential build's time goes (cProfile, cumulative seconds, no KQL):")
    for row in build["profile"][:16]:
        print(f"     {row}")


def print_workspace(ws: dict[str, Any]) -> None:
    deploy = ws["deploy"]
    print(f"\n2-3. workspace, {ws['rules']} rules, {ws['latency_ms']} ms latency")
    plan = ws["plan"]
    print(
        f"   plan stage {plan['plan_s']:.2f} s, bare paged list {plan['bare_list_s']:.2f} s, "
        f"{plan['requests']} request(s); as commands: plan {plan['command']['seconds']:.2f} s, "
        f"bare-list script {plan['bare_list_script']['seconds']:.2f} s "
        f"({plan['command_ratio']}x)"
    )
    for name in ("default", "concurrency_1", "second_deploy", "bucket"):
        row = deploy[name]
        print(
            f"   deploy {name:16} {row['seconds']:8.2f} s  writes {row['writes']:4}  "
            f"429s {row['throttled']:4}  {row['outcomes']}"
        )
    print(f"   bucket minimum {deploy['bucket_minimum_s']:.2f} s")
    for name, value in ws["ratios"].items():
        print(f"   {name:40} {value}")
    print("\n4. plan --all-envs")
    for row in ws["many"]["rows"]:
        print(
            f"   {row['workspaces']:3} workspace(s)  cold {row['cold_s']:7.2f} s  "
            f"cached {row['cached_s']:6.2f} s  {row['peak_mb']:6.1f} MB"
        )


if __name__ == "__main__":
    sys.exit(main())
