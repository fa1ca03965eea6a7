#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the tests of optuna's shared storages.
#
#   eval "$(bash .ci/postgres.sh start)"   # prints `export TZB_POSTGRES_URL=... TZB_PG_DIR=...`
#   bash .ci/postgres.sh stop              # stops the server in $TZB_PG_DIR and deletes the folder
#
# `start` installs Debian's `postgresql` package when no server binaries are found (as root),
# creates a cluster in a fresh temporary folder (trust authentication, no fsync: test data
# only) and starts it on a free port. Run as root, the server runs as the `postgres` user.
# Everything except the export lines goes to stderr.
set -euo pipefail

bindir() {
  local d
  for d in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local t0 bin dir port
  t0=$(date +%s%N)
  if ! bin=$(bindir); then
    if [ "$(id -u)" != 0 ]; then
      echo "postgres.sh: no PostgreSQL server binaries found and not root to install them" >&2
      return 1
    fi
    echo "postgres.sh: installing Debian's postgresql package" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    bin=$(bindir)
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/tzb-pg.XXXXXX")
  chmod 700 "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
  fi
  port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_server_user "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  as_server_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >&2 || { cat "$dir/server.log" >&2; return 1; }
  echo "postgres.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') ready on 127.0.0.1:$port" \
    "after $((($(date +%s%N) - t0) / 1000000)) ms" >&2
  echo "export TZB_POSTGRES_URL=postgresql+psycopg2://postgres@127.0.0.1:$port/postgres"
  echo "export TZB_PG_DIR=$dir"
}

stop() {
  local dir=${TZB_PG_DIR:?TZB_PG_DIR is not set: nothing to stop}
  local bin
  bin=$(bindir)
  as_server_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
