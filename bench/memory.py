#!/usr/bin/env python3
"""Memory benchmark (issue 14's memory targets), on the release binary.

  python3 bench/memory.py [--tokens 10000] [--policies 1000] [--big 300000]

1. Live tokens: cedargate (release, token cache and decision cache on, decision log to a file)
   behind Envoy (one worker) with COUNT-policies generated next to the shipped ones; TOKENS
   distinct ES256 tokens (distinct `sub`, `jti` and group) are sent once each through Envoy,
   then once more (all cached). Prints cedargate's RSS (VmRSS) after start, after the first pass
   and after the second, and its peak (VmHWM).
2. Large policy file: `cedargate validate` and `cedargate serve` (until /readyz) on a folder
   holding a generated file of BIG policies; prints wall time and peak RSS (/usr/bin/time -v for
   validate, VmHWM for serve) against the file's size.

Build first: cargo build --release --bin cedargate (or set CEDARGATE_BIN to another build).
"""
import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the system benchmark's helpers: ports, processes, configs)

ROOT = run.ROOT
# Another build to compare (e.g. a copy of the previous release binary).
run.CEDARGATE = os.environ.get("CEDARGATE_BIN", run.CEDARGATE)


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def mb(kb):
    return kb / 1024


def generate(out, count):
    subprocess.run([sys.executable, os.path.join(ROOT, "bench/gen_policies.py"), out, str(count)],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.getsize(os.path.join(out, "generated.cedar"))


def with_policy_dir(config, folder):
    text = open(config).read().replace(f"policy_dir: {os.path.join(ROOT, 'policies')}",
                                       f"policy_dir: {folder}", 1)
    with open(config, "w") as f:
        f.write(text)


def live_tokens(tmp, tokens, policies, decision_cache):
    folder = os.path.join(tmp, "policies-live")
    generate(folder, policies)
    lines = subprocess.run(["node", os.path.join(ROOT, "bench/mint-token.mjs"), str(tokens)],
                           capture_output=True, text=True, check=True).stdout.split()
    procs = run.Procs()
    try:
        authz, cg_admin, listener, admin = (run.free_port() for _ in range(4))
        cfg = run.cedargate_config(tmp, authz, cg_admin, 10000)
        with_policy_dir(cfg, folder)
        text = open(cfg).read()
        marker = "capacity: 10000                          # per policy-set version"
        assert marker in text, "cedargate.yaml's decision_cache.capacity line moved"
        with open(cfg, "w") as f:
            f.write(text.replace(marker, f"capacity: {decision_cache}  # per policy-set version", 1))
        server = procs.start([run.CEDARGATE, "serve", "-c", cfg], env={**os.environ, "RUST_LOG": "warn"})
        run.wait_http(f"http://127.0.0.1:{cg_admin}/readyz")
        config = run.render(os.path.join(ROOT, "bench/envoy-ext-authz.yaml"),
                            {10100: listener, 9911: admin, 9291: authz})
        path = os.path.join(tmp, "envoy-memory.yaml")
        with open(path, "w") as f:
            f.write(config)
        procs.start([run.ENVOY, "-c", path, "--concurrency", "1", "--base-id", "41", "--log-level", "error"])
        run.wait_http(f"http://127.0.0.1:{admin}/ready", expect="LIVE")
        start = status_kb(server.pid, "VmRSS")
        rows = []
        for label in ("first pass (every token new)", "second pass (every token cached)"):
            conn = http.client.HTTPConnection("127.0.0.1", listener)
            codes = {}
            began = time.time()
            for token in lines:
                conn.request("GET", run.PATH, headers={"authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                codes[response.status] = codes.get(response.status, 0) + 1
            conn.close()
            rows.append((label, status_kb(server.pid, "VmRSS"), codes, time.time() - began))
        peak = status_kb(server.pid, "VmHWM")
        print(f"\n## Live tokens: {len(lines)} distinct tokens, {policies} generated + shipped policies, "
              f"decision cache capacity {decision_cache}")
        print(f"| moment | cedargate RSS | answers |\n|---|---|---|")
        print(f"| after start (ready) | {mb(start):.1f} MB | |")
        for label, rss, codes, secs in rows:
            answers = ", ".join(f"{n}× {c}" for c, n in sorted(codes.items()))
            print(f"| after the {label}, {secs:.1f} s | {mb(rss):.1f} MB | {answers} |")
        print(f"| peak (VmHWM) | {mb(peak):.1f} MB | |")
    finally:
        procs.stop()


def big_file(tmp, count):
    folder = os.path.join(tmp, "policies-big")
    size = generate(folder, count)
    cfg = run.cedargate_config(tmp, run.free_port(), run.free_port(), 10000)
    with_policy_dir(cfg, folder)
    print(f"\n## Large policy file: {count} policies, {size / 1e6:.1f} MB (generated.cedar)")
    print("| command | wall time | peak RSS | peak / file size |\n|---|---|---|---|")
    began = time.time()
    out = subprocess.run(["/usr/bin/time", "-v", run.CEDARGATE, "validate", "-c", cfg],
                         capture_output=True, text=True)
    secs = time.time() - began
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
    verdict = "ok" if out.returncode == 0 else f"exit {out.returncode}"
    print(f"| validate ({verdict}) | {secs:.1f} s | {mb(peak):.0f} MB | {peak * 1024 / size:.1f}× |")
    admin = re.search(r"admin: 127.0.0.1:(\d+)", open(cfg).read()).group(1)
    log = open(os.path.join(tmp, "serve-big.log"), "w")
    began = time.time()
    server = subprocess.Popen([run.CEDARGATE, "serve", "-c", cfg], stdout=subprocess.DEVNULL, stderr=log)
    try:
        run.wait_http(f"http://127.0.0.1:{admin}/readyz", deadline=600)
        secs = time.time() - began
        peak = status_kb(server.pid, "VmHWM")
        rss = status_kb(server.pid, "VmRSS")
        print(f"| serve until /readyz | {secs:.1f} s | {mb(peak):.0f} MB (then {mb(rss):.0f} MB) "
              f"| {peak * 1024 / size:.1f}× |")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    progress = [line for line in open(os.path.join(tmp, "serve-big.log")) if "load" in line.lower()]
    print(f"\nserve's log while loading ({len(progress)} lines about loading):")
    for line in progress[:12]:
        print("  " + line.rstrip()[:160])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=10000)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--big", type=int, default=300000)
    ap.add_argument("--skip", choices=["tokens", "big"], action="append", default=[])
    ap.add_argument("--decision-cache", type=int, default=10000,
                    help="decision_cache.capacity for the live-token run (0: off), to see its share")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cedargate-memory-") as tmp:
        if "tokens" not in args.skip:
            live_tokens(tmp, args.tokens, args.policies, args.decision_cache)
        if "big" not in args.skip:
            big_file(tmp, args.big)


if __name__ == "__main__":
    main()
