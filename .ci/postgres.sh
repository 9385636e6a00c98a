#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: Debian's postgresql (installed with apt if missing), started as a
# non-root user on 127.0.0.1 on a free port, with a database `xrun`. Prints its URL on stdout, e.g.
#   postgresql://xrun@127.0.0.1:41234/xrun
# and on stderr how to stop it. Usage: .ci/postgres.sh [DIR]   (DIR holds the data, socket and log; default: a
# new folder under /tmp). Exit 1, saying why, where PostgreSQL cannot be installed or started.
set -euo pipefail

fail() { echo "postgres.sh: $*" >&2; exit 1; }
bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BIN="$(bin_dir)"
if [ -z "$BIN" ]; then
  command -v apt-get >/dev/null || fail "PostgreSQL is not installed and there is no apt-get to install it"
  [ "$(id -u)" = 0 ] || fail "PostgreSQL is not installed, and installing it needs root (apt-get install postgresql)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || fail "apt-get install postgresql failed"
  BIN="$(bin_dir)"
  [ -n "$BIN" ] || fail "apt-get installed postgresql, but no /usr/lib/postgresql/*/bin appeared"
fi

DIR="${1:-$(mktemp -d /tmp/xrun-postgres.XXXXXX)}"
mkdir -p "$DIR"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user the package made.
AS=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$DIR"
  AS=(runuser -u postgres --)
fi

"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U xrun --auth=trust -E UTF8 >"$DIR/initdb.log" 2>&1 \
  || fail "initdb failed (see $DIR/initdb.log)"
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=200 -c fsync=off" start >/dev/null \
  || fail "the server did not start (see $DIR/server.log)"
"$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U xrun xrun || fail "createdb failed"

echo "postgres.sh: stop it with: ${AS[*]} $BIN/pg_ctl -D $DIR/data stop" >&2
echo "postgresql://xrun@127.0.0.1:$PORT/xrun"
