#!/usr/bin/env python3
"""Writes a large policy folder for the load benchmarks (BENCHMARKS.md, "Large policy sets").

  python3 bench/gen_policies.py OUT_DIR [COUNT]     (default 300000 policies, ~50 MB)

OUT_DIR gets the shipped policy folder (schema, entities.json and policies, not its tests: strict
validation runs as in production, and the shipped requests keep their answers) plus one big
`generated.cedar` of COUNT policies in the style of the shipped ones: per-user and
per-group permits on the demo's actions, a few forbids, `when` conditions over the context and
principal attributes. Every policy validates against the shipped schema.
"""
import os
import shutil
import sys

ACTIONS = [
    ("GET /orders", "Service", '"orders"'),
    ("GET /orders/{id}", "Service", '"orders"'),
    ("POST /orders", "Service", '"orders"'),
    ("DELETE /orders/{id}", "Service", '"orders"'),
    ("GET /payments/{id}", "Service", '"payments"'),
    ("GET /reports/{name}", "Service", '"reports"'),
]


def policy(n: int) -> str:
    action, rtype, rid = ACTIONS[n % len(ACTIONS)]
    kind = n % 10
    if kind < 6:
        principal = f'principal == User::"user-{n:06d}"'
        cond = f'when {{ context.time.hour >= {n % 8} && context.request.host == "api-{n % 97}.example" }}'
    elif kind < 9:
        principal = f'principal in Group::"group-{n % 5000:04d}"'
        cond = f'when {{ principal has tenant && principal.tenant == "tenant-{n % 311}" }}'
    else:
        return (
            f'@id("gen-{n:06d}")\n'
            f'forbid (principal == User::"blocked-{n:06d}", action, resource)\n'
            f'unless {{ context.authenticated && context.time.weekday < 6 }};\n'
        )
    return (
        f'@id("gen-{n:06d}")\n'
        f"permit (\n  {principal},\n  action == Action::\"{action}\",\n"
        f"  resource == {rtype}::{rid}\n)\n{cond};\n"
    )


def main() -> None:
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 300_000
    os.makedirs(out, exist_ok=True)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "policies")
    for name in os.listdir(here):
        if name.endswith((".cedar", ".cedarschema", ".json")):
            shutil.copy(os.path.join(here, name), os.path.join(out, name))
    with open(os.path.join(out, "generated.cedar"), "w") as f:
        for n in range(count):
            f.write(policy(n))
    size = os.path.getsize(os.path.join(out, "generated.cedar"))
    print(f"{out}/generated.cedar: {count} policies, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
