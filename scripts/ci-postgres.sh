#!/usr/bin/env bash
# A throw-away PostgreSQL on loopback for the tests marked `postgres`.
#
#   scripts/ci-postgres.sh start   # prints postgresql://postgres@127.0.0.1:PORT/shoestring_test
#   scripts/ci-postgres.sh stop
#
# Uses Debian's `postgresql` package (installed with apt-get when missing and we
# are root). The cluster lives in $SHOESTRING_PG_DIR (default
# /tmp/shoestring-pg-$UID), listens on 127.0.0.1 only, trusts local
# connections (it holds test data only) and is reused if already running.
# Progress goes to stderr; only the URL goes to stdout.
set -euo pipefail

PGDIR="${SHOESTRING_PG_DIR:-/tmp/shoestring-pg-$(id -u)}"
PORT="${SHOESTRING_PG_PORT:-54329}"
DB=shoestring_test
URL="postgresql://postgres@127.0.0.1:${PORT}/${DB}"

log() { echo "ci-postgres: $*" >&2; }

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

install_postgres() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "PostgreSQL is not installed and I cannot install it (need root and apt-get)"
    return 1
  fi
  log "installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >&2 || { apt-get update -q >&2 && apt-get install -y -q postgresql >&2; }
}

# Run a command as the cluster owner: `postgres` when we are root (initdb
# refuses root), else ourselves.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local bindir
  bindir="$(find_bindir)" || { install_postgres && bindir="$(find_bindir)"; } || exit 1
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    log "no 'postgres' system user to own the cluster"; exit 1
  fi
  mkdir -p "$PGDIR"
  [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
  chmod 700 "$PGDIR"
  if [ ! -f "$PGDIR/data/PG_VERSION" ]; then
    log "initdb in $PGDIR/data"
    as_owner "$bindir/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 >&2
  fi
  if ! as_owner "$bindir/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
    log "starting on 127.0.0.1:$PORT"
    # fsync stays on: the tests check durability claims against it.
    as_owner "$bindir/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $PORT -k $PGDIR -c max_connections=200" start >&2 \
      || { cat "$PGDIR/server.log" >&2; exit 1; }
  fi
  if ! as_owner "$bindir/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$DB'" postgres | grep -q 1; then
    as_owner "$bindir/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" >&2
  fi
  echo "$URL"
}

stop() {
  local bindir
  bindir="$(find_bindir)" || exit 0
  if [ -f "$PGDIR/data/PG_VERSION" ]; then
    as_owner "$bindir/pg_ctl" -D "$PGDIR/data" -m fast -w stop >&2 || true
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
