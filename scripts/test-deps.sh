#!/usr/bin/env bash
# What the test suite needs beyond .venv/, installed only where it is missing; `make test` runs it.
# One line per need at the end: `need_command COMMAND DEBIAN_PACKAGE  # why`. Any area may add its own.
# An install that cannot happen (not root, no apt-get, no network) is reported, not fatal: the tests
# that need the tool say what the host lacks.
set -euo pipefail

apt_updated=0

need_command() {
  local command=$1 package=$2
  if command -v "$command" >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: $command is missing and $package cannot be installed here (needs root and apt-get)" >&2
    return 0
  fi
  echo "test-deps: installing $package (for $command)"
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq || echo "test-deps: apt-get update failed" >&2
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
    || echo "test-deps: could not install $package" >&2
}

# Needs of the suite (one line each):
need_command chromium chromium  # tests/test_studio_browser.py drives the studio with Playwright in Debian's Chromium
need_command promtool prometheus  # tests/test_monitoring.py: promtool checks and a real Prometheus scraping the platform
