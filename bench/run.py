#!/usr/bin/env python3
"""System benchmark: Envoy alone, Envoy's own JWT+RBAC, the ext_authz floor, and cedargate.

One interleaved run over the configurations (rounds x [A, B, F, C, D]):

  A  Envoy, no authorization (direct_response)
  B  Envoy jwt_authn (JWT cache on) + rbac on the `sub` claim
  F  Envoy + ext_authz to examples/noop_authz.rs (answers OK at once): the price of the hop
  C  Envoy + ext_authz to cedargate (example config and policies, token cache on)
  D  the same with cedargate's token cache off

For each: throughput at saturation (wrk, 1 thread x 16 connections, zero errors required), latency
at a fixed 1,000 rps (oha -q, open loop), and the authorization server's CPU time per Check (from
/proc/<pid>/stat over the measured runs, divided by Envoy's ext_authz counters). Envoy runs with
one worker. Medians over rounds; ratios against F, B and A because the machine is shared.

Usage: scripts/bench-system.sh [--rounds N] [--seconds S]   (writes the table into BENCHMARKS.md)
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVOY = os.path.join(ROOT, ".tools/envoy/envoy/_bin/envoy")
CEDARGATE = os.path.join(ROOT, "target/release/cedargate")
NOOP = os.path.join(ROOT, "target/release/examples/noop_authz")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PATH = "/orders/1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, deadline=20.0, expect=None):
    end = time.time() + deadline
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                body = r.read().decode()
                if r.status == 200 and (expect is None or expect in body):
                    return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench: {url} did not become ready")


def wait_port(port, deadline=20.0):
    end = time.time() + deadline
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"bench: port {port} did not open")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def envoy_counter(admin_port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter={re.escape(name)}$") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + ": "):
                return int(line.split(": ")[1])
    return 0


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


def render(path, ports):
    text = open(path).read()
    for old, new in ports.items():
        needle = f"port_value: {old} "
        assert text.count(needle) == 1, (path, needle)
        text = text.replace(needle, f"port_value: {new} ")
    return text


def cedargate_config(tmp, grpc, admin, cache):
    text = open(os.path.join(ROOT, "cedargate.yaml")).read()
    jwks = os.path.join(ROOT, "tests/fixtures/keys/jwks.json")
    subs = [
        ("http://127.0.0.1:9400", "https://bench.cedargate.test"),
        ("algorithms: [ES256, RS256]", f"algorithms: [ES256, RS256]\n    jwks_file: {jwks}"),
        ("127.0.0.1:9191", f"127.0.0.1:{grpc}"),
        ("127.0.0.1:9192", f"127.0.0.1:{admin}"),
        ("policy_dir: policies", f"policy_dir: {os.path.join(ROOT, 'policies')}"),
        ("capacity: 10000", f"capacity: {cache}"),
        ("output: stdout ", f"output: file\n  path: {os.path.join(tmp, 'decisions.jsonl')}\n "),
    ]
    for old, new in subs:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = os.path.join(tmp, f"cedargate-{cache}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def wrk(url, token, seconds):
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "-H", f"authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: (.*)", out)
    socket_errors = sum(int(n) for n in re.findall(r"\d+", socket.group(1))) if socket else 0
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, (int(non2xx.group(1)) if non2xx else 0) + socket_errors, requests


def oha(url, token, seconds, rate, connections=16, raw=False):
    out = subprocess.run(
        ["oha", "--no-tui", "--output-format", "json", "--latency-correction", "-z", f"{seconds}s", "-q", str(rate),
         "-c", str(connections), "-H", f"authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    if raw:
        return data
    pct = data["latencyPercentiles"]
    codes = data.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    bad = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(data.get("errorDistribution", {}).values())
    return {"p50": pct["p50"] * 1e6, "p99": pct["p99"] * 1e6, "p999": pct["p99.9"] * 1e6}, ok, bad


def run_one(name, tmp, token, seconds, rate, base_id, overload_rate=None):
    procs = Procs()
    listener, admin = free_port(), free_port()
    server = None
    try:
        if name == "A":
            config = render(os.path.join(ROOT, "bench/envoy-a-noauth.yaml"), {10100: listener, 9911: admin})
        elif name == "B":
            config = render(os.path.join(ROOT, "bench/envoy-b-jwt-rbac.yaml"), {10100: listener, 9911: admin})
        else:
            authz = free_port()
            if name == "F":
                server = procs.start([NOOP, f"127.0.0.1:{authz}"])
                wait_port(authz)
            else:
                cg_admin = free_port()
                cfg = cedargate_config(tmp, authz, cg_admin, 10000 if name == "C" else 0)
                server = procs.start([CEDARGATE, "serve", "-c", cfg], env={**os.environ, "RUST_LOG": "warn"})
                wait_http(f"http://127.0.0.1:{cg_admin}/readyz")
            config = render(os.path.join(ROOT, "bench/envoy-ext-authz.yaml"),
                            {10100: listener, 9911: admin, 9291: authz})
        path = os.path.join(tmp, f"envoy-{name}.yaml")
        with open(path, "w") as f:
            f.write(config)
        procs.start([ENVOY, "-c", path, "--concurrency", "1", "--base-id", str(base_id), "--log-level", "error"])
        wait_http(f"http://127.0.0.1:{admin}/ready", expect="LIVE")
        url = f"http://127.0.0.1:{listener}{PATH}"
        wrk(url, token, 2)  # warm-up: connections, caches, JIT-free but page-cache warm
        if overload_rate:
            errors0 = envoy_counter(admin, "http.bench.ext_authz.error")
            data = oha(url, token, seconds, overload_rate, connections=64, raw=True)
            pct = data["latencyPercentiles"]
            return {
                "codes": data.get("statusCodeDistribution", {}),
                "client_errors": sum(data.get("errorDistribution", {}).values()),
                "rps": data["summary"]["requestsPerSec"],
                "p50": pct["p50"] * 1e6, "p99": pct["p99"] * 1e6, "p999": pct["p99.9"] * 1e6,
                "shed": envoy_counter(admin, "http.bench.ext_authz.error") - errors0,
            }
        checks0 = envoy_counter(admin, "http.bench.ext_authz.ok") if server else 0
        cpu0 = cpu_seconds(server.pid) if server else 0.0
        rps, wrk_errors, _ = wrk(url, token, seconds)
        lat, ok, bad = oha(url, token, seconds, rate)
        cpu = (cpu_seconds(server.pid) - cpu0) if server else 0.0
        checks = (envoy_counter(admin, "http.bench.ext_authz.ok") - checks0) if server else 0
        return {
            "rps": rps, "errors": wrk_errors + bad, "lat": lat, "fixed_ok": ok,
            "cpu_us_per_check": (cpu / checks * 1e6) if checks else None,
        }
    finally:
        procs.stop()


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def versions():
    envoy = subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    oha_v = subprocess.run(["oha", "--version"], capture_output=True, text=True).stdout.strip()
    return envoy, rustc, (wrk_v.stdout + wrk_v.stderr).split("\n")[0].strip(), oha_v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--configs", default="A,B,F,C,D")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    ap.add_argument("--no-overload", action="store_true", help="skip the overload run (C at 2x saturation)")
    args = ap.parse_args()
    for tool in ("wrk", "oha"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: `{tool}` is missing (apt-get install wrk; cargo install oha --locked)")
    token = subprocess.run(["node", os.path.join(ROOT, "bench/mint-token.mjs")],
                           capture_output=True, text=True, check=True).stdout.strip()
    names = args.configs.split(",")
    results = {n: [] for n in names}
    base_id = 600 + os.getpid() % 300
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for n in names:
                res = run_one(n, tmp, token, args.seconds, args.rate, base_id)
                print(f"round {r + 1} {n}: {res['rps']:.0f} req/s, errors {res['errors']}, "
                      f"p50 {res['lat']['p50']:.0f} us, p99 {res['lat']['p99']:.0f} us, "
                      f"cpu/check {res['cpu_us_per_check'] or 0:.1f} us", flush=True)
                results[n].append(res)
    summary = {}
    for n, rs in results.items():
        summary[n] = {
            "rps": med([r["rps"] for r in rs]),
            "errors": sum(r["errors"] for r in rs),
            "p50": med([r["lat"]["p50"] for r in rs]),
            "p99": med([r["lat"]["p99"] for r in rs]),
            "p999": med([r["lat"]["p999"] for r in rs]),
            "cpu": med([r["cpu_us_per_check"] for r in rs]),
        }
    labels = {
        "A": "A: Envoy, no auth", "B": "B: Envoy jwt_authn (cache) + rbac",
        "F": "F: ext_authz to a do-nothing tonic server", "C": "C: cedargate (token cache on)",
        "D": "D: cedargate, token cache off",
    }

    def ratio(a, b):
        return f"{summary[a]['rps'] / summary[b]['rps']:.2f}" if a in summary and b in summary else "–"

    envoy_v, rustc_v, wrk_v, oha_v = versions()
    cmd = f"scripts/bench-system.sh --rounds {args.rounds} --seconds {args.seconds} --rate {args.rate}"
    lines = [
        f"Run {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} on "
        f"{platform.node() and 'this machine'}: {os.cpu_count()} cores "
        f"({open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}), "
        f"Envoy {envoy_v} with one worker, {rustc_v}, {wrk_v}, {oha_v}.",
        "",
        f"Command: `{cmd}`. Saturation: `wrk -t1 -c16 -d{args.seconds}s`. Fixed rate: "
        f"`oha -q {args.rate} -c16 -z {args.seconds}s --latency-correction` (open loop, corrected for coordinated omission). Medians of {args.rounds} interleaved rounds.",
        "",
        "| configuration | req/s at saturation | errors | p50 @1k rps | p99 @1k rps | p99.9 @1k rps | server CPU per Check |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in names:
        s = summary[n]
        cpu = f"{s['cpu']:.1f} µs" if s["cpu"] is not None else "–"
        lines.append(f"| {labels[n]} | {s['rps']:.0f} | {s['errors']} | {s['p50']:.0f} µs | "
                     f"{s['p99']:.0f} µs | {s['p999']:.0f} µs | {cpu} |")
    lines.append("")
    if all(k in summary for k in "ACF"):
        lines.append(f"Ratios (throughput): C/F {ratio('C', 'F')}, C/B {ratio('C', 'B')}, C/A {ratio('C', 'A')}, "
                     f"D/C {ratio('D', 'C')}. Added latency over A at {args.rate} rps: "
                     f"p50 {summary['C']['p50'] - summary['A']['p50']:.0f} µs, "
                     f"p99 {summary['C']['p99'] - summary['A']['p99']:.0f} µs.")
    if "C" in summary and not args.no_overload:
        rate = int(2 * summary["C"]["rps"])
        o = run_one("C", tmp_overload := tempfile.mkdtemp(), token, args.seconds, args.rate, base_id, overload_rate=rate)
        shutil.rmtree(tmp_overload, ignore_errors=True)
        served = sum(v for k, v in o["codes"].items() if k.startswith("2"))
        total = sum(o["codes"].values()) + o["client_errors"]
        lines.append("")
        lines.append(
            f"Overload (C at twice its saturating rate, `oha -q {rate} -c64 -z {args.seconds}s`): "
            f"{o['rps']:.0f} responses/s; {served} of {total} requests served (2xx), status counts {o['codes']}, "
            f"{o['shed']} Checks failed or shed (Envoy `ext_authz.error`, answered 503 = fail closed), "
            f"{o['client_errors']} client-side errors; latency of all responses p50 {o['p50']:.0f} µs, "
            f"p99 {o['p99']:.0f} µs, p99.9 {o['p999']:.0f} µs.")
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    if not args.no_write:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        text = open(path).read()
        start, end = "<!-- system-bench:start -->", "<!-- system-bench:end -->"
        block = f"{start}\n{table}{end}"
        if start in text:
            text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
        else:
            text += "\n" + block + "\n"
        with open(path, "w") as f:
            f.write(text)
        print(f"written to {path}")


if __name__ == "__main__":
    sys.exit(main())
