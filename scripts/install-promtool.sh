#!/usr/bin/env bash
# Install promtool (Prometheus's rule checker), used by tests/it/observability.rs to run
# `promtool check rules` and `promtool test rules` on deploy/prometheus/alerts.yaml.
# Debian ships it in the `prometheus` package. Idempotent: does nothing if promtool is on PATH.
#
# The package also installs the Prometheus server and, on systemd hosts, enables it; the service
# is stopped again where possible, since only promtool is wanted here.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-promtool: needs root (apt-get install prometheus); or install promtool yourself" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# RUNLEVEL=1 keeps invoke-rc.d from starting the bundled server during the install.
if ! RUNLEVEL=1 apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
  apt-get update -qq
  RUNLEVEL=1 apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

if ! command -v promtool >/dev/null 2>&1; then
  echo "install-promtool: apt-get install prometheus did not provide promtool" >&2
  exit 1
fi
