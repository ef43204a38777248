#!/usr/bin/env bash
# Install (if missing), start and stop the real servers the test suite needs, on loopback and
# non-default ports. Works as root on a fresh Debian 12 with only Python 3 installed.
#
#   scripts/servers.sh start   install what is missing, start every server whose URL variable is
#                              not already set, wait until each answers, write and print the env file
#   scripts/servers.sh stop    stop what `start` started (pid files); servers not running are ignored
#   scripts/servers.sh env     print the env file
#
# `eval "$(scripts/servers.sh start)"` sets the variables: only the env file goes to stdout.
# State, data and logs live in ${SERVERS_DIR:-/tmp/lfs-servers} (postgres must be able to traverse
# it: /tmp works, /root does not); the Mongo-wire server's venv lives in .servers/mongo-venv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${SERVERS_DIR:-/tmp/lfs-servers}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)

REDIS_PORT=6390
CLUSTER_PORTS=(7001 7002 7003)
WEBDIS_PORT=7390
PG_PORT=5490
PG_DB=sessions_test
MONGO_PORT=27090
MONGO_VENV=$ROOT/.servers/mongo-venv
MONGO_PKG=secantusdb==0.7.0b3

# One `start`/`stop` at a time; `flock -o` keeps the lock fd out of the servers we launch.
if [[ -z ${LFS_SERVERS_LOCKED:-} ]]; then
    LFS_SERVERS_LOCKED=1 exec flock -o "$STATE/.lock" "$BASH" "${BASH_SOURCE[0]}" "$@"
fi

log() { echo "servers: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

APT_UPDATED=false
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! $APT_UPDATED; then apt-get update -qq; APT_UPDATED=true; fi
    apt-get install -y -qq --no-install-recommends "$@"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for NAME LOGFILE PID CMD...: poll CMD for up to 30 s; fail with the log tail if it never
# succeeds or if PID (may be empty) dies first.
wait_for() {
    local name=$1 logfile=$2 pid=$3 deadline=$((SECONDS + 30))
    shift 3
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)) || { [[ -n $pid ]] && ! alive "$pid"; }; then
            log "$name did not become ready; last lines of $logfile:"
            tail -n 30 "$logfile" >&2 2>/dev/null || true
            die "$name failed to start"
        fi
        sleep 0.1
    done
}

# alive PID: running and not a zombie (an init that reaps slowly leaves exited daemons as zombies).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# stop_pidfile NAME PIDFILE PATTERN: TERM the pid if it is alive and its command line matches.
stop_pidfile() {
    local name=$1 pidfile=$2 pattern=$3 pid i
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ -n $pid ]] && alive "$pid" && grep -qa -- "$pattern" "/proc/$pid/cmdline"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid"
        for ((i = 0; i < 150; i++)); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then log "$name ignored SIGTERM, killing"; kill -KILL "$pid"; fi
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------- Redis and Redis Cluster

need_redis() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then apt_install redis-server; fi
}
redis_up() { [[ $(redis-cli -p "$1" ping 2>/dev/null) == PONG ]]; }

start_redis_node() {  # PORT [EXTRA ARGS...]
    local port=$1
    shift
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
        --dir "$STATE" --pidfile "$STATE/redis-$port.pid" --logfile "$STATE/redis-$port.log" "$@"
    wait_for "redis :$port" "$STATE/redis-$port.log" "" redis_up "$port"
}

start_redis() {
    [[ -n ${REDIS_URL:-} ]] && { log "redis: REDIS_URL is set, starting nothing"; return; }
    need_redis
    if redis_up $REDIS_PORT; then log "redis: already running on :$REDIS_PORT"; return; fi
    start_redis_node $REDIS_PORT
    log "redis: started on :$REDIS_PORT"
}

cluster_ok() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
}

start_redis_cluster() {
    [[ -n ${REDIS_CLUSTER_URL:-} ]] && { log "cluster: REDIS_CLUSTER_URL is set, starting nothing"; return; }
    need_redis
    if cluster_ok; then log "cluster: already running on :${CLUSTER_PORTS[*]}"; return; fi
    local port any_up=false
    for port in "${CLUSTER_PORTS[@]}"; do redis_up "$port" && any_up=true; done
    $any_up || rm -f "$STATE"/nodes-*.conf  # nothing running: start a fresh cluster
    for port in "${CLUSTER_PORTS[@]}"; do
        redis_up "$port" || start_redis_node "$port" --cluster-enabled yes \
            --cluster-config-file "$STATE/nodes-$port.conf" --cluster-node-timeout 2000
    done
    if redis-cli -p "${CLUSTER_PORTS[0]}" cluster info | tr -d '\r' | grep -qx 'cluster_slots_assigned:0'; then
        redis-cli --cluster create "${CLUSTER_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
            >"$STATE/cluster-create.log" 2>&1 || { tail -n 30 "$STATE/cluster-create.log" >&2; die "cluster create failed"; }
    fi
    wait_for "redis cluster" "$STATE/cluster-create.log" "" cluster_ok
    log "cluster: started on :${CLUSTER_PORTS[*]}"
}

stop_redis() {
    local port
    for port in $REDIS_PORT "${CLUSTER_PORTS[@]}"; do
        stop_pidfile "redis :$port" "$STATE/redis-$port.pid" redis-server
    done
    rm -f "$STATE"/nodes-*.conf
}

# ---------------------------------------------------------------- Webdis

webdis_up() {
    python3 - "$WEBDIS_PORT" 2>/dev/null <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/PING", timeout=1) as r:
    sys.exit(0 if b"PONG" in r.read() else 1)
EOF
}

start_webdis() {
    [[ -n ${WEBDIS_URL:-} ]] && { log "webdis: WEBDIS_URL is set, starting nothing"; return; }
    command -v webdis >/dev/null || apt_install webdis
    if webdis_up; then log "webdis: already running on :$WEBDIS_PORT"; return; fi
    # Backend: the external Redis if REDIS_URL is set (host and port only), else ours.
    local host=127.0.0.1 port=$REDIS_PORT hostport
    if [[ -n ${REDIS_URL:-} ]]; then
        hostport=${REDIS_URL#*://}; hostport=${hostport##*@}; hostport=${hostport%%/*}
        host=${hostport%:*}; [[ $hostport == *:* ]] && port=${hostport##*:} || port=6379
    fi
    cat >"$STATE/webdis.json" <<EOF
{
    "redis_host": "$host", "redis_port": $port, "redis_auth": null,
    "http_host": "127.0.0.1", "http_port": $WEBDIS_PORT,
    "threads": 2, "pool_size": 10, "daemonize": false, "database": 0,
    "acl": [{"disabled": ["DEBUG"]}],
    "verbosity": 3, "logfile": "$STATE/webdis.log"
}
EOF
    # Quirk: a config path webdis cannot read silently starts it on 7379, so always wait on ours.
    setsid nohup webdis "$STATE/webdis.json" </dev/null >>"$STATE/webdis.out" 2>&1 &
    echo $! >"$STATE/webdis.pid"
    wait_for webdis "$STATE/webdis.log" $! webdis_up
    log "webdis: started on :$WEBDIS_PORT (redis $host:$port)"
}

stop_webdis() { stop_pidfile webdis "$STATE/webdis.pid" webdis; }

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
    local dir
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    [[ -n $dir && -x $dir/initdb ]] && echo "$dir"
}

start_postgres() {
    [[ -n ${POSTGRES_URL:-} ]] && { log "postgres: POSTGRES_URL is set, starting nothing"; return; }
    local bin pg=$STATE/pg
    if ! bin=$(pg_bindir); then
        apt_install postgresql-15 || apt_install postgresql
        bin=$(pg_bindir) || die "no initdb under /usr/lib/postgresql/*/bin after installing PostgreSQL"
    fi
    if "$bin/pg_isready" -q -h 127.0.0.1 -p $PG_PORT; then
        log "postgres: already running on :$PG_PORT"
    else
        mkdir -p "$pg"
        chown postgres:postgres "$pg"
        runuser -u postgres -- test -x "$pg" || die "user postgres cannot reach $pg: set SERVERS_DIR under /tmp"
        [[ -f $pg/data/PG_VERSION ]] || runuser -u postgres -- "$bin/initdb" -D "$pg/data" -U postgres \
            -A trust -E UTF8 --no-locale -N >"$pg/initdb.log" 2>&1 || { tail -n 30 "$pg/initdb.log" >&2; die "initdb failed"; }
        runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -l "$pg/pg.log" -w -t 30 start -o \
            "-p $PG_PORT -k $pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            >/dev/null || { tail -n 30 "$pg/pg.log" >&2; die "postgres failed to start"; }
        wait_for postgres "$pg/pg.log" "" "$bin/pg_isready" -q -h 127.0.0.1 -p $PG_PORT
        log "postgres: started on :$PG_PORT"
    fi
    local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XqtA)
    [[ $("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") == 1 ]] ||
        "${psql[@]}" -c "CREATE DATABASE $PG_DB" >/dev/null
}

stop_postgres() {
    local bin pg=$STATE/pg
    [[ -f $pg/data/postmaster.pid ]] && bin=$(pg_bindir) || return 0
    log "stopping postgres"
    runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -m fast -w stop >/dev/null || true
}

# ---------------------------------------------------------------- MongoDB wire protocol (secantusdb)

mongo_up() {
    port_open $MONGO_PORT && "$MONGO_VENV/bin/python" -c "import pymongo
pymongo.MongoClient('mongodb://127.0.0.1:$MONGO_PORT/', directConnection=True,
                    serverSelectionTimeoutMS=1000).admin.command('ping')"
}

install_mongo() {
    "$MONGO_VENV/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('secantusdb') != '${MONGO_PKG#*==}')" 2>/dev/null && return
    log "mongo: installing $MONGO_PKG into $MONGO_VENV"
    # Debian's python3 has no venv support without python3-venv.
    python3 -m venv "$MONGO_VENV" >/dev/null 2>&1 || { rm -rf "$MONGO_VENV"; apt_install python3-venv; python3 -m venv "$MONGO_VENV"; }
    "$MONGO_VENV/bin/python" -m pip install -q --disable-pip-version-check "$MONGO_PKG"
}

start_mongo() {
    [[ -n ${MONGO_URL:-} ]] && { log "mongo: MONGO_URL is set, starting nothing"; return; }
    install_mongo
    if mongo_up >/dev/null 2>&1; then log "mongo: already running on :$MONGO_PORT"; return; fi
    setsid nohup "$MONGO_VENV/bin/python" "$ROOT/scripts/mongo_wire_server.py" 127.0.0.1 $MONGO_PORT \
        </dev/null >>"$STATE/mongo.log" 2>&1 &
    echo $! >"$STATE/mongo.pid"
    wait_for mongo "$STATE/mongo.log" $! mongo_up
    log "mongo: started on :$MONGO_PORT"
}

stop_mongo() { stop_pidfile mongo "$STATE/mongo.pid" mongo_wire_server.py; }

# ---------------------------------------------------------------- commands

write_env() {
    {
        printf 'export REDIS_URL=%q\n' "${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
        printf 'export REDIS_CLUSTER_URL=%q\n' "${REDIS_CLUSTER_URL:-redis://127.0.0.1:${CLUSTER_PORTS[0]}/0}"
        printf 'export WEBDIS_URL=%q\n' "${WEBDIS_URL:-http://127.0.0.1:$WEBDIS_PORT}"
        printf 'export POSTGRES_URL=%q\n' "${POSTGRES_URL:-postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB}"
        printf 'export MONGO_URL=%q\n' "${MONGO_URL:-mongodb://127.0.0.1:$MONGO_PORT/}"
    } >"$STATE/env.tmp"
    mv "$STATE/env.tmp" "$STATE/env"
}

case ${1:-} in
    start)
        {  # progress and installer output go to stderr, only the env file to stdout
            start_redis
            start_redis_cluster
            start_webdis
            start_postgres
            start_mongo
        } >&2
        write_env
        cat "$STATE/env"
        ;;
    stop)
        stop_mongo
        stop_webdis
        stop_postgres
        stop_redis
        ;;
    env)
        [[ -f $STATE/env ]] || die "no $STATE/env: run '$0 start' first"
        cat "$STATE/env"
        ;;
    *)
        echo "usage: $0 start|stop|env   (state in \${SERVERS_DIR:-/tmp/lfs-servers})" >&2
        exit 2
        ;;
esac
