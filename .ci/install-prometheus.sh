#!/usr/bin/env bash
# Installs Prometheus (Debian's `prometheus` package) for the tests that evaluate stackc's PromQL.
# The package is fetched with apt-get and unpacked (dpkg -x) into the active virtualenv's bin (CI),
# else /usr/local/bin: installing it would also start a Prometheus service, which tests don't want.
# Idempotent; skipped when `prometheus` is already on PATH.
set -euo pipefail
target="${VIRTUAL_ENV:+$VIRTUAL_ENV/bin}"
target="${target:-/usr/local/bin}"
if command -v prometheus >/dev/null || [ -x "$target/prometheus" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "install-prometheus: apt-get and dpkg are needed to fetch Debian's prometheus package" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's sandbox user writes the download here
download() { (cd "$work" && apt-get download -q prometheus >/dev/null 2>&1); }
# a fresh machine may have no package lists yet: fetch them once and try again
download || { apt-get update -qq >/dev/null 2>&1 && download; } || {
  echo "install-prometheus: apt-get download prometheus failed (even after apt-get update)" >&2
  exit 1
}
dpkg -x "$work"/prometheus_*.deb "$work/root"
install -m 755 "$work/root/usr/bin/prometheus" "$work/root/usr/bin/promtool" "$target/"
"$target/prometheus" --version 2>&1 | head -1
