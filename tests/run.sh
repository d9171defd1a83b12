#!/usr/bin/env bash
# Install everything the test suite needs, start what it uses, and run every test.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: Chromium for the browser tests.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: run 'sudo apt-get install -y chromium' first" >&2
    exit 1
  fi
fi

# PostgreSQL: the bank tests run against a real server as well as SQLite. tests/pg.py starts a throwaway
# cluster (initdb + pg_ctl, loopback, free port) from these binaries; with GELATO_TEST_PG_URL set (an admin
# URL such as postgresql+psycopg://postgres@127.0.0.1:5432/postgres) the tests use that server instead.
if [ -z "${GELATO_TEST_PG_URL:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL is missing: run 'sudo apt-get install -y postgresql' first" >&2
    exit 1
  fi
fi

python3 -m pip install -q -r requirements-dev.txt

python3 -m ruff check .
python3 -m pytest -q "$@"
