#!/usr/bin/env bash
# Load benchmark on loopback: a fixed-body nginx backend measured directly, through approuter and
# through an nginx reverse proxy (the reference), each with wrk at many connections and at one, and
# an authenticated route through a second approuter logged in at the development XSUAA (to the
# backend as an environment destination, and as a destination of the development Destination
# service with the user's token exchanged, OAuth2UserTokenExchange), and HTTP/2
# over TLS (h2load) through an HTTPS approuter and an nginx `ssl http2` proxy to the same backend.
# Prints requests/s, p50/p99 latency and the CPU time the answering process spent per request, the
# ratios against the targets, and approuter's memory.
# The report is also written to target/bench-load.txt.
#
# Environment:
#   DURATION      seconds per many-connection run (default 10; "10s" also accepted)
#   CONNECTIONS   connections of the many-connection run (default 50)
#   SINGLE_DURATION  seconds per one-connection run (default 5)
#   ROUNDS        how often the scenarios run, interleaved and each round in a rotated order; the
#                 table shows medians (default 1)
#   ACCESS_LOG    true (default): approuter and the nginx proxy both log each request to a file;
#                 false: neither does
#   WORKERS       approuter tokio workers = nginx proxy workers (default: number of cores)
#   SCENARIOS     which rows to run, in order (default "direct approuter approuter_hyper nginx nginx_fwd
#                 approuter_auth approuter_dest approuter_mt approuter_h2 nginx_h2"); approuter_mt is
#                 the authenticated route of a multitenant approuter (TENANT_HOST_PATTERN, a tenant
#                 of a multi-zone development XSUAA); approuter_hyper is approuter with
#                 HTTP_FAST_PATHS=false; the _h2 rows are HTTP/2 over TLS measured with h2load;
#                 nginx_fwd is the nginx proxy doing the header work approuter does on a public
#                 route (X-Forwarded-*, a correlation id up, X-Frame-Options and a request id down)
#   H2_CONNECTIONS, H2_STREAMS  h2load's -c and -m for the _h2 rows (default 32 and 10)
#   SKIP_BUILD=1  use the existing target/release/approuter
#   STRICT=1      exit 3 when a target is missed
#
# Needs: cargo, nginx (nginx-light is enough), wrk, curl, python3; for the _h2 rows h2load
# (Debian's nghttp2-client) and openssl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
DURATION=${DURATION%s}
SINGLE_DURATION=${SINGLE_DURATION:-5}
SINGLE_DURATION=${SINGLE_DURATION%s}
CONNECTIONS=${CONNECTIONS:-50}
ROUNDS=${ROUNDS:-1}
# Both proxies write one access-log line per request to a file, or neither does.
ACCESS_LOG=${ACCESS_LOG:-true}
SCENARIOS=${SCENARIOS:-"direct approuter approuter_hyper nginx nginx_fwd approuter_auth approuter_dest approuter_mt approuter_h2 nginx_h2"}
H2_CONNECTIONS=${H2_CONNECTIONS:-32}
H2_STREAMS=${H2_STREAMS:-10}
REPORT="$ROOT/target/bench-load.txt"
BODY='hello from backend'   # plus a newline: 19 bytes
# Approuter runs one tokio worker per core by default; it and the reference proxy get WORKERS each
# (tokio reads TOKIO_WORKER_THREADS when the runtime does not set a count itself).
WORKERS=${WORKERS:-$(nproc)}
# Targets.
TARGET_RPS_RATIO=1.0       # approuter / nginx proxy, requests/s at CONNECTIONS
TARGET_ADDED_P50_US=100    # approuter p50 minus direct p50 at one connection
TARGET_IDLE_RSS_KIB=$((15 * 1024))
TARGET_AUTH_RPS_RATIO=0.9  # approuter on an authenticated route / approuter on a public one, at CONNECTIONS
TARGET_H2_RPS_RATIO=0.9    # approuter / nginx proxy, HTTP/2 over TLS requests/s
TARGET_DEST_RPS_RATIO=0.9  # a Destination service destination / the same route to an environment destination
TARGET_MT_RPS_RATIO=0.95   # the authenticated route of a tenant / the same route single-tenant

for tool in cargo nginx wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "bench-load: $tool is not installed" >&2; exit 2; }
done
[[ $DURATION =~ ^[0-9]+$ && $SINGLE_DURATION =~ ^[0-9]+$ && $CONNECTIONS =~ ^[0-9]+$ && $ROUNDS =~ ^[1-9][0-9]*$
    && $WORKERS =~ ^[1-9][0-9]*$ && $H2_CONNECTIONS =~ ^[1-9][0-9]*$ && $H2_STREAMS =~ ^[1-9][0-9]*$ ]] || {
    echo "bench-load: DURATION, SINGLE_DURATION, CONNECTIONS, ROUNDS, WORKERS, H2_CONNECTIONS and H2_STREAMS must be whole numbers" >&2
    exit 2
}
[[ $ACCESS_LOG == true || $ACCESS_LOG == false ]] || {
    echo "bench-load: ACCESS_LOG must be true or false" >&2
    exit 2
}
(( CONNECTIONS >= 1 )) || { echo "bench-load: CONNECTIONS must be at least 1" >&2; exit 2; }

CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-load.XXXXXX")
# nginx workers run as nobody when started by root; they may need their temp folders.
chmod 755 "$WORK"
PIDS=()
KEEP_WORK=0

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Bounded: a process that ignores TERM for 5 s gets KILL.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if (( KEEP_WORK )); then
        echo "bench-load: configurations and logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "bench-load: $*" >&2
    KEEP_WORK=1
    exit 1
}

# Writes to stdout and to the report.
say() {
    printf '%s\n' "$*" | tee -a "$WORK/report.txt"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Polls until `url` returns the backend's body with status 200; fails after ~10 s or when `pid`
# exits. Checking the body also catches a foreign server that took the port first.
wait_ready() {
    local name=$1 pid=$2 url=$3 body
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || fail "$name exited during start-up"
        body=$(curl -s -f -k --max-time 1 "$url" 2>/dev/null) || body=""
        if [[ $body == "$BODY" ]]; then
            return 0
        fi
        sleep 0.1
    done
    fail "$name did not return the backend's body at $url within 10 s${body:+ (got: ${body:0:80})}"
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

hwm_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# nginx temp paths default to /var/lib/nginx; keep them in the work folder for the modules compiled in.
nginx_temp_paths() {
    local prefix=$1 modules
    modules=$(nginx -V 2>&1)
    echo "client_body_temp_path $prefix/client_body;"
    echo "proxy_temp_path $prefix/proxy;"
    local module
    for module in fastcgi uwsgi scgi; do
        if ! grep -q -- "--without-http_${module}_module" <<<"$modules"; then
            echo "${module}_temp_path $prefix/$module;"
        fi
    done
}

# === components ===

start_backend() {
    BACKEND_PORT=$(free_port)
    local dir="$WORK/backend"
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    $(nginx_temp_paths "$dir")
    keepalive_timeout 65;
    keepalive_requests 1000000000;
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location /plain {
            default_type text/plain;
            return 200 "$BODY\n";
        }
    }
}
EOF
    nginx -p "$dir" -c nginx.conf -g 'daemon off;' >"$dir/logs/stdout.log" 2>&1 &
    BACKEND_PID=$!
    PIDS+=("$BACKEND_PID")
    wait_ready backend "$BACKEND_PID" "http://127.0.0.1:$BACKEND_PORT/plain"
}

# A public approuter (one catch-all route to the backend) in $WORK/<folder>, with HTTP_FAST_PATHS
# set to `fast_paths` and any further VAR=value arguments in its environment; sets <var>_PORT and
# <var>_PID.
start_public_approuter() {
    local var=$1 name=$2 dir="$WORK/$2" fast_paths=$3 port admin_port pid
    shift 3
    port=$(free_port)
    admin_port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/xs-app.json" <<'EOF'
{"authenticationMethod":"none","routes":[{"source":"^/(.*)$","destination":"backend"}]}
EOF
    # The admin listener gets a free port too, so that runs never collide on its default port.
    TOKIO_WORKER_THREADS=$WORKERS PORT=$port XS_BIND_ADDRESS=127.0.0.1 \
        ADMIN_ADDRESS=127.0.0.1:$admin_port ACCESS_LOG=$ACCESS_LOG HTTP_FAST_PATHS=$fast_paths \
        destinations="[{\"name\":\"backend\",\"url\":\"http://127.0.0.1:$BACKEND_PORT\"}]" \
        env "$@" "$ROOT/target/release/approuter" --dir "$dir" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    pid=$!
    PIDS+=("$pid")
    printf -v "${var}_PORT" '%s' "$port"
    printf -v "${var}_PID" '%s' "$pid"
    wait_line "$name" "$pid" "$dir" '^approuter listening on '
}

start_approuter() {
    start_public_approuter APPROUTER approuter true
    IDLE_RSS_KIB=$(rss_kib "$APPROUTER_PID")
}

# A self-signed P-256 certificate for 127.0.0.1, shared by the HTTPS approuter and nginx's h2 server.
make_tls_material() {
    TLS_DIR="$WORK/tls"
    mkdir -p "$TLS_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
        -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" \
        >"$TLS_DIR/openssl.log" 2>&1 || fail "openssl could not make a certificate: $(cat "$TLS_DIR/openssl.log")"
    chmod 644 "$TLS_DIR/key.pem"
}

# Waits until `dir`/stdout.log has a line matching `pattern`; fails after ~10 s or when `pid` exits.
wait_line() {
    local name=$1 pid=$2 dir=$3 pattern=$4
    for _ in $(seq 100); do
        grep -q -- "$pattern" "$dir/stdout.log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || fail "$name exited during start-up: $(cat "$dir/stderr.log" 2>/dev/null)"
        sleep 0.1
    done
    fail "$name did not print '$pattern' within 10 s"
}

# The development XSUAA; it writes ca.pem, vcap_services.json and bindings/ to $WORK/xsuaa, then
# prints its URLs (the login-user line last).
start_xsuaa() {
    XSUAA_DIR="$WORK/xsuaa"
    mkdir -p "$XSUAA_DIR"
    # The Destination service's one destination: the backend, with the user's token exchanged.
    cat >"$WORK/service-destinations.json" <<EOF
{"bench-dest": {"URL": "http://127.0.0.1:$BACKEND_PORT", "ProxyType": "Internet",
 "Authentication": "OAuth2UserTokenExchange", "clientId": "sb-bench-backend!t1", "clientSecret": "bench"}}
EOF
    "$ROOT/target/release/xsuaa-dev" --out "$XSUAA_DIR" --destinations "$WORK/service-destinations.json" \
        >"$XSUAA_DIR/stdout.log" 2>"$XSUAA_DIR/stderr.log" &
    XSUAA_PID=$!
    PIDS+=("$XSUAA_PID")
    wait_line xsuaa-dev "$XSUAA_PID" "$XSUAA_DIR" '^login user:'
    [[ -s $XSUAA_DIR/ca.pem && -s $XSUAA_DIR/vcap_services.json ]] ||
        fail "xsuaa-dev did not write ca.pem and vcap_services.json to $XSUAA_DIR"
}

# A second approuter with one protected route (CSRF protection on, as by default, and a scope check)
# to the same backend, forwarding the user's token. The
# public approuter stays as it is, so its rows are comparable with earlier runs.
start_approuter_auth() {
    APPROUTER_AUTH_PORT=$(free_port)
    local dir="$WORK/approuter-auth"
    mkdir -p "$dir"
    cat >"$dir/xs-app.json" <<'EOF'
{"routes":[{"source":"^/auth/(.*)$","target":"/$1","destination":"backend","scope":"$XSAPPNAME.Display"},
{"source":"^/dest/(.*)$","target":"/$1","destination":"bench-dest","scope":"$XSAPPNAME.Display"}]}
EOF
    APPROUTER_AUTH_ADMIN_PORT=$(free_port)
    # The login callback redirects with a plain 302 (PRESERVE_FRAGMENT=false) so curl can follow it;
    # the login rate limit is off because the benchmark logs in from one address.
    TOKIO_WORKER_THREADS=$WORKERS PORT=$APPROUTER_AUTH_PORT XS_BIND_ADDRESS=127.0.0.1 \
        ADMIN_ADDRESS=127.0.0.1:$APPROUTER_AUTH_ADMIN_PORT ACCESS_LOG=$ACCESS_LOG PRESERVE_FRAGMENT=false LOGIN_RATE_LIMIT=off \
        VCAP_SERVICES="$(cat "$XSUAA_DIR/vcap_services.json")" XS_CACERT_PATH="$XSUAA_DIR/ca.pem" \
        destinations="[{\"name\":\"backend\",\"url\":\"http://127.0.0.1:$BACKEND_PORT\",\"forwardAuthToken\":true}]" \
        "$ROOT/target/release/approuter" --dir "$dir" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    APPROUTER_AUTH_PID=$!
    PIDS+=("$APPROUTER_AUTH_PID")
    wait_line "authenticated approuter" "$APPROUTER_AUTH_PID" "$dir" '^approuter listening on '
}

# Logs in once through the authenticated approuter and checks that the session cookie alone gets
# the backend's body; sets AUTH_COOKIE.
login_approuter_auth() {
    local url="http://127.0.0.1:$APPROUTER_AUTH_PORT/auth/plain" dir="$WORK/approuter-auth"
    local jar="$dir/cookies.txt" body session status
    body=$(curl -s -L --max-redirs 10 --max-time 10 --cacert "$XSUAA_DIR/ca.pem" -c "$jar" -b "$jar" "$url") ||
        fail "login through $url failed (curl exit $?)"
    [[ $body == "$BODY" ]] || fail "login through $url did not end at the backend's body (got: ${body:0:200})"
    # Netscape cookie file: tab-separated, name in field 6, value in field 7 (HttpOnly lines start with #).
    session=$(awk -F'\t' '$6 == "JSESSIONID" { print $7 }' "$jar" | tail -n 1)
    [[ -n $session ]] || fail "no JSESSIONID cookie after the login: $(cat "$jar")"
    AUTH_COOKIE="JSESSIONID=$session"
    status=$(curl -s --max-time 5 -o "$dir/check.txt" -w '%{http_code}' -H "Cookie: $AUTH_COOKIE" "$url") ||
        fail "authenticated request to $url failed"
    [[ $status == 200 && $(cat "$dir/check.txt") == "$BODY" ]] ||
        fail "authenticated request to $url returned $status, not 200 with the backend's body: $(head -c 200 "$dir/check.txt")"
}

# A multitenant approuter: a second development XSUAA with a zone for the tenant `acme`, and the
# same protected route, served on acme.app.localhost (names under localhost are loopback for curl,
# wrk's Host header and the router alike). Logs in once and sets MT_COOKIE.
start_approuter_mt() {
    local xsuaa="$WORK/xsuaa-mt" dir="$WORK/approuter-mt"
    mkdir -p "$xsuaa" "$dir"
    "$ROOT/target/release/xsuaa-dev" --out "$xsuaa" --tenant acme=zone-acme \
        >"$xsuaa/stdout.log" 2>"$xsuaa/stderr.log" &
    PIDS+=("$!")
    wait_line "xsuaa-dev (multi-zone)" "$!" "$xsuaa" '^login user:'
    APPROUTER_MT_PORT=$(free_port)
    cat >"$dir/xs-app.json" <<'EOF'
{"routes":[{"source":"^/auth/(.*)$","target":"/$1","destination":"backend","scope":"$XSAPPNAME.Display"}]}
EOF
    TOKIO_WORKER_THREADS=$WORKERS PORT=$APPROUTER_MT_PORT XS_BIND_ADDRESS=127.0.0.1 \
        ADMIN_ADDRESS=off ACCESS_LOG=$ACCESS_LOG PRESERVE_FRAGMENT=false LOGIN_RATE_LIMIT=off \
        TENANT_HOST_PATTERN='^(.*)\.app\.localhost$' \
        VCAP_SERVICES="$(cat "$xsuaa/vcap_services.json")" XS_CACERT_PATH="$xsuaa/ca.pem" \
        destinations="[{\"name\":\"backend\",\"url\":\"http://127.0.0.1:$BACKEND_PORT\",\"forwardAuthToken\":true}]" \
        "$ROOT/target/release/approuter" --dir "$dir" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    APPROUTER_MT_PID=$!
    PIDS+=("$APPROUTER_MT_PID")
    wait_line "multitenant approuter" "$APPROUTER_MT_PID" "$dir" '^approuter listening on '
    local url="http://acme.app.localhost:$APPROUTER_MT_PORT/auth/plain" jar="$dir/cookies.txt" body session
    body=$(curl -s -L --max-redirs 10 --max-time 10 --cacert "$xsuaa/ca.pem" -c "$jar" -b "$jar" "$url") ||
        fail "tenant login through $url failed (curl exit $?)"
    [[ $body == "$BODY" ]] || fail "tenant login through $url did not end at the backend's body (got: ${body:0:200})"
    session=$(awk -F'\t' '$6 == "JSESSIONID" { print $7 }' "$jar" | tail -n 1)
    [[ -n $session ]] || fail "no JSESSIONID cookie after the tenant login: $(cat "$jar")"
    MT_COOKIE="JSESSIONID=$session"
}

start_nginx_proxy() {
    PROXY_PORT=$(free_port)
    PROXY_FWD_PORT=$(free_port)
    PROXY_H2_PORT=$(free_port)
    local h2_server=""
    if (( WITH_H2 )); then
        # The same plain proxy behind TLS with HTTP/2, as approuter's HTTPS listener offers it.
        h2_server="server {
        listen 127.0.0.1:$PROXY_H2_PORT ssl http2;
        ssl_certificate $TLS_DIR/cert.pem;
        ssl_certificate_key $TLS_DIR/key.pem;
        http2_max_concurrent_streams 128;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
    fi
    local dir="$WORK/proxy"
    mkdir -p "$dir/logs"
    local access_log=off
    if [[ $ACCESS_LOG == true ]]; then
        access_log="$dir/logs/access.log"
    fi
    cat >"$dir/nginx.conf" <<EOF
worker_processes $WORKERS;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log $access_log;
    $(nginx_temp_paths "$dir")
    keepalive_timeout 65;
    keepalive_requests 1000000000;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    # The same proxy doing the header work of approuter's public route, for a like-for-like row.
    server {
        listen 127.0.0.1:$PROXY_FWD_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Path \$uri;
            proxy_set_header X-CorrelationID \$request_id;
            add_header X-Frame-Options SAMEORIGIN;
            add_header X-Request-Id \$request_id;
        }
    }
    $h2_server
}
EOF
    nginx -p "$dir" -c nginx.conf -g 'daemon off;' >"$dir/logs/stdout.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_ready "nginx proxy" "$PROXY_PID" "http://127.0.0.1:$PROXY_PORT/plain"
    wait_ready "nginx proxy (forwarding headers)" "$PROXY_PID" "http://127.0.0.1:$PROXY_FWD_PORT/plain"
    if (( WITH_H2 )); then
        wait_ready "nginx proxy (HTTP/2 over TLS)" "$PROXY_PID" "https://127.0.0.1:$PROXY_H2_PORT/plain"
    fi
}

# === scenarios ===
# Each scenario_<name> sets URL and WRK_ARGS (extra wrk arguments, e.g. `-H "Cookie: ..."` for an
# authenticated route) for one row of the table. Add a scenario by defining the function and
# naming it in SCENARIOS; set it up (login, tokens) inside the function.

scenario_direct() {
    URL="http://127.0.0.1:$BACKEND_PORT/plain"
    WRK_ARGS=()
}

scenario_approuter() {
    URL="http://127.0.0.1:$APPROUTER_PORT/plain"
    WRK_ARGS=()
}

# The same public route with HTTP_FAST_PATHS=false: hyper serves the client connection and sends
# the upstream request; this row against the one above is what the fast lane and the inline
# client buy.
scenario_approuter_hyper() {
    URL="http://127.0.0.1:$APPROUTER_HYPER_PORT/plain"
    WRK_ARGS=()
}

scenario_nginx() {
    URL="http://127.0.0.1:$PROXY_PORT/plain"
    WRK_ARGS=()
}

scenario_nginx_fwd() {
    URL="http://127.0.0.1:$PROXY_FWD_PORT/plain"
    WRK_ARGS=()
}

# Logged in once before the runs (login_approuter_auth); every request carries the session cookie,
# and approuter forwards the user's token to the backend.
scenario_approuter_auth() {
    URL="http://127.0.0.1:$APPROUTER_AUTH_PORT/auth/plain"
    WRK_ARGS=(-H "Cookie: $AUTH_COOKIE")
}

# The same user and route rules, to a destination of the Destination service (OAuth2UserTokenExchange):
# found once per user and cached, the exchanged token sent to the backend.
scenario_approuter_dest() {
    URL="http://127.0.0.1:$APPROUTER_AUTH_PORT/dest/plain"
    WRK_ARGS=(-H "Cookie: $AUTH_COOKIE")
}

# The tenant acme's user on acme's host (the Host header; wrk connects to 127.0.0.1).
scenario_approuter_mt() {
    URL="http://127.0.0.1:$APPROUTER_MT_PORT/auth/plain"
    WRK_ARGS=(-H "Host: acme.app.localhost:$APPROUTER_MT_PORT" -H "Cookie: $MT_COOKIE")
}

# HTTP/2 over TLS with h2load: H2_CONNECTIONS connections of H2_STREAMS concurrent streams each.
scenario_approuter_h2() {
    URL="https://127.0.0.1:$APPROUTER_H2_PORT/plain"
    LOADGEN=h2load
}

scenario_nginx_h2() {
    URL="https://127.0.0.1:$PROXY_H2_PORT/plain"
    LOADGEN=h2load
}

# === measurement ===

# Converts a wrk latency ("812.00us", "1.23ms", "2.00s") to microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.0f", v }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.0f", v * 1000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.0f", v * 1000000 }
        else printf "NaN"
    }'
}

# CPU time (user + system, clock ticks) of the given processes and, for nginx, their workers.
cpu_ticks() {
    local pid total=0 ticks
    for pid in "$@" $(pgrep -P "$1" 2>/dev/null); do
        # Fields 14 and 15 of /proc/PID/stat, counted after the command name's closing parenthesis.
        ticks=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || ticks=0
        total=$(( total + ${ticks:-0} ))
    done
    echo "$total"
}

# The process that answers a scenario's requests, whose CPU time per request is reported.
scenario_pid() {
    case $1 in
        direct) echo "$BACKEND_PID" ;;
        approuter) echo "$APPROUTER_PID" ;;
        approuter_hyper) echo "$APPROUTER_HYPER_PID" ;;
        nginx | nginx_fwd) echo "$PROXY_PID" ;;
        approuter_auth | approuter_dest) echo "$APPROUTER_AUTH_PID" ;;
        approuter_mt) echo "$APPROUTER_MT_PID" ;;
        approuter_h2) echo "$APPROUTER_H2_PID" ;;
        nginx_h2) echo "$PROXY_PID" ;;
    esac
}

# Runs wrk for one scenario and appends rps, p50, p99, errors and the answering process's CPU
# microseconds per request (one line per round) to $WORK/result-<name>-<connections>.
measure() {
    local name=$1 connections=$2 duration=$3 threads out pid ticks_before ticks_after
    threads=$(( connections < 2 ? 1 : 2 ))
    out="$WORK/wrk-$name-$connections.txt"
    WRK_ARGS=()
    LOADGEN=wrk
    "scenario_$name"
    if [[ $LOADGEN == h2load ]]; then
        measure_h2load "$name" "$connections" "$duration"
        return
    fi
    pid=$(scenario_pid "$name")
    ticks_before=$(cpu_ticks $pid)
    timeout $((duration + 30)) wrk -t"$threads" -c"$connections" -d"${duration}s" --latency \
        "${WRK_ARGS[@]}" "$URL" >"$out" 2>&1 || fail "wrk failed for $name: $(cat "$out")"
    ticks_after=$(cpu_ticks $pid)
    local rps p50 p99 non2xx socket_errors requests cpu_us
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    socket_errors=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")
    [[ -n $rps && -n $p50 && -n $p99 ]] || fail "cannot parse wrk output for $name: $(cat "$out")"
    requests=$(awk '/requests in/ { print $1 }' "$out")
    cpu_us=$(awk -v t=$(( ticks_after - ticks_before )) -v hz="$CLK_TCK" -v n="${requests:-0}" \
        'BEGIN { if (n > 0 && t > 0) printf "%.1f", t * 1000000 / hz / n; else print "NaN" }')
    echo "$rps $p50 $p99 $(( ${non2xx:-0} + ${socket_errors:-0} )) $cpu_us" >>"$WORK/result-$name-$connections"
}

# The h2load form of `measure`: the many-connection run is H2_CONNECTIONS x H2_STREAMS, the
# one-connection run one stream. h2load gives no percentiles: p50 and p99 stay empty.
measure_h2load() {
    local name=$1 connections=$2 duration=$3 out pid ticks_before ticks_after clients=$H2_CONNECTIONS
    local streams=$H2_STREAMS threads=2
    if (( connections == 1 )); then clients=1 streams=1 threads=1; fi
    out="$WORK/h2load-$name-$connections.txt"
    pid=$(scenario_pid "$name")
    ticks_before=$(cpu_ticks $pid)
    timeout $((duration + 30)) h2load -t"$threads" -c"$clients" -m"$streams" -D "$duration" "$URL" >"$out" 2>&1 ||
        fail "h2load failed for $name: $(tail -n 20 "$out")"
    ticks_after=$(cpu_ticks $pid)
    local rps requests failed cpu_us protocol
    protocol=$(awk '/^Application protocol:/ { print $3 }' "$out")
    [[ $protocol == h2 ]] || fail "h2load did not speak HTTP/2 with $name (protocol: ${protocol:-none})"
    rps=$(awk '/^finished in/ { gsub(",", ""); printf "%.0f", $4 }' "$out")
    # "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
    requests=$(awk '/^requests:/ { print $8 }' "$out")
    failed=$(awk '/^requests:/ { print $10 + $12 + $14 }' "$out")
    [[ -n $rps && -n $requests ]] || fail "cannot parse h2load output for $name: $(cat "$out")"
    local status_2xx
    status_2xx=$(awk '/^status codes:/ { print $3 }' "$out")
    failed=$(( failed + requests - ${status_2xx:-0} ))
    cpu_us=$(awk -v t=$(( ticks_after - ticks_before )) -v hz="$CLK_TCK" -v n="${requests:-0}" \
        'BEGIN { if (n > 0 && t > 0) printf "%.1f", t * 1000000 / hz / n; else print "NaN" }')
    echo "$rps NaN NaN $failed $cpu_us" >>"$WORK/result-$name-$connections"
}

# Field 0 (req/s), 1 (p50), 2 (p99), 3 (errors) or 4 (CPU us per request) of a scenario: the
# median over the rounds (errors: the sum).
result() {
    local file="$WORK/result-$1-$2" field=$3
    [[ -f $file ]] || return 0
    if (( field == 3 )); then
        awk '{ sum += $4 } END { print sum }' "$file"
    elif (( field == 4 )); then
        awk '$5 != "NaN" { print $5 }' "$file" | sort -g |
            awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
    else
        awk -v f=$((field + 1)) '$f != "NaN" { print $f }' "$file" | sort -n |
            awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
    fi
}

# A table cell: the result, or "-" where the tool gives none (h2load has no percentiles).
cell() {
    local value
    value=$(result "$@")
    echo "${value:--}"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'
}

verdict() {
    # verdict VALUE OP TARGET, OP is ge or le.
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        if (v == "n/a" || v == "") { print "n/a"; exit }
        ok = (op == "ge") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
        print ok ? "ok" : "MISSED"
    }'
}

# === run ===

for name in $SCENARIOS; do
    declare -F "scenario_$name" >/dev/null || fail "unknown scenario $name (SCENARIOS=$SCENARIOS)"
done
mkdir -p "$ROOT/target"
WITH_AUTH=0
[[ " $SCENARIOS " == *" approuter_auth "* || " $SCENARIOS " == *" approuter_dest "* || " $SCENARIOS " == *" approuter_mt "* ]] && WITH_AUTH=1
WITH_H2=0
[[ " $SCENARIOS " == *"_h2 "* ]] && WITH_H2=1
if (( WITH_H2 )); then
    for tool in h2load openssl; do
        command -v "$tool" >/dev/null || fail "$tool is needed for the _h2 rows (SCENARIOS=$SCENARIOS)"
    done
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release) || fail "cargo build --release failed"
    if (( WITH_AUTH )); then
        (cd "$ROOT" && cargo build --release -p xsuaa-dev) || fail "cargo build --release -p xsuaa-dev failed"
    fi
fi
[[ -x $ROOT/target/release/approuter ]] || fail "target/release/approuter is missing"
(( ! WITH_AUTH )) || [[ -x $ROOT/target/release/xsuaa-dev ]] || fail "target/release/xsuaa-dev is missing"

start_backend
start_approuter
if (( WITH_H2 )); then
    make_tls_material
    start_public_approuter APPROUTER_H2 approuter-h2 true TLS_CERT_PATH="$TLS_DIR/cert.pem" \
        TLS_KEY_PATH="$TLS_DIR/key.pem"
    wait_ready "approuter (HTTPS)" "$APPROUTER_H2_PID" "https://127.0.0.1:$APPROUTER_H2_PORT/plain"
fi
if [[ " $SCENARIOS " == *" approuter_hyper "* ]]; then
    start_public_approuter APPROUTER_HYPER approuter-hyper false
    wait_ready "approuter (hyper only)" "$APPROUTER_HYPER_PID" "http://127.0.0.1:$APPROUTER_HYPER_PORT/plain"
fi
start_nginx_proxy
wait_ready approuter "$APPROUTER_PID" "http://127.0.0.1:$APPROUTER_PORT/plain"
if (( WITH_AUTH )); then
    start_xsuaa
    start_approuter_auth
    login_approuter_auth
fi
if [[ " $SCENARIOS " == *" approuter_mt "* ]]; then
    start_approuter_mt
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Rounds interleave the scenarios, so a load change on the machine hits all of them alike, and
# each round starts one scenario later: no scenario always follows the same one (on 2 shared cores
# a proxy measured a few percent lower right after the direct run than after the others). With
# ROUNDS a multiple of the number of scenarios, every scenario holds every place equally often.
read -r -a scenario_list <<<"$SCENARIOS"
for round in $(seq "$ROUNDS"); do
    shift_by=$(( (round - 1) % ${#scenario_list[@]} ))
    for name in "${scenario_list[@]:shift_by}" "${scenario_list[@]:0:shift_by}"; do
        echo "bench-load: round $round/$ROUNDS: $name, $CONNECTIONS connections, ${DURATION}s" >&2
        measure "$name" "$CONNECTIONS" "$DURATION"
        echo "bench-load: round $round/$ROUNDS: $name, 1 connection, ${SINGLE_DURATION}s" >&2
        measure "$name" 1 "$SINGLE_DURATION"
    done
done
kill -0 "$APPROUTER_PID" 2>/dev/null || fail "approuter died under load: $(cat "$WORK/approuter/stderr.log")"
if (( WITH_AUTH )); then
    kill -0 "$APPROUTER_AUTH_PID" 2>/dev/null ||
        fail "authenticated approuter died under load: $(cat "$WORK/approuter-auth/stderr.log")"
fi
LOADED_RSS_KIB=$(rss_kib "$APPROUTER_PID")
PEAK_RSS_KIB=$(hwm_kib "$APPROUTER_PID")

: >"$WORK/report.txt"
say "approuter load benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, loopback," \
    "load average before the runs: $LOAD_BEFORE)"
if awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    say "WARNING: the machine was busy before the runs (load average ${LOAD_BEFORE%% *} on $(nproc) cores);" \
        "the ratios are not reliable"
fi
say "wrk: -t2 -c$CONNECTIONS -d${DURATION}s and -t1 -c1 -d${SINGLE_DURATION}s (_h2 rows: h2load -c$H2_CONNECTIONS -m$H2_STREAMS and -c1 -m1), $ROUNDS round(s), medians; access logs $ACCESS_LOG; body $(( ${#BODY} + 1 )) bytes;" \
    "approuter $WORKERS tokio workers, nginx proxy $WORKERS workers, backend nginx 1 worker"
say ""
say "$(printf '%-16s %6s %12s %10s %10s %8s %12s' scenario conns 'req/s' 'p50 us' 'p99 us' errors 'cpu us/req')"
for name in $SCENARIOS; do
    for connections in "$CONNECTIONS" 1; do
        label=$connections
        if [[ $name == *_h2 ]]; then
            label="${H2_CONNECTIONS}x$H2_STREAMS"
            (( connections > 1 )) || label=1x1
        fi
        say "$(printf '%-16s %6s %12s %10s %10s %8s %12s' "$name" "$label" \
            "$(cell "$name" "$connections" 0)" "$(cell "$name" "$connections" 1)" \
            "$(cell "$name" "$connections" 2)" "$(cell "$name" "$connections" 3)" \
            "$(cell "$name" "$connections" 4)")"
    done
done
say ""

rps_vs_nginx=$(ratio "$(result approuter "$CONNECTIONS" 0)" "$(result nginx "$CONNECTIONS" 0)")
rps_vs_direct=$(ratio "$(result approuter "$CONNECTIONS" 0)" "$(result direct "$CONNECTIONS" 0)")
nginx_vs_direct=$(ratio "$(result nginx "$CONNECTIONS" 0)" "$(result direct "$CONNECTIONS" 0)")
added_p50="n/a"
nginx_added_p50="n/a"
if [[ -n $(result approuter 1 1) && -n $(result direct 1 1) ]]; then
    added_p50=$(( $(result approuter 1 1) - $(result direct 1 1) ))
fi
if [[ -n $(result nginx 1 1) && -n $(result direct 1 1) ]]; then
    nginx_added_p50=$(( $(result nginx 1 1) - $(result direct 1 1) ))
fi
v_rps=$(verdict "$rps_vs_nginx" ge "$TARGET_RPS_RATIO")
v_p50=$(verdict "$added_p50" le "$TARGET_ADDED_P50_US")
v_rss=$(verdict "$IDLE_RSS_KIB" le "$TARGET_IDLE_RSS_KIB")
auth_vs_public=$(ratio "$(result approuter_auth "$CONNECTIONS" 0)" "$(result approuter "$CONNECTIONS" 0)")
v_auth=$(verdict "$auth_vs_public" ge "$TARGET_AUTH_RPS_RATIO")
say "$(printf '%-48s %10s   %s' "approuter / nginx proxy, req/s (c=$CONNECTIONS)" "$rps_vs_nginx" "target >= $TARGET_RPS_RATIO: $v_rps")"
say "$(printf '%-48s %10s' "approuter / direct, req/s (c=$CONNECTIONS)" "$rps_vs_direct")"
say "$(printf '%-48s %10s' "nginx proxy / direct, req/s (c=$CONNECTIONS)" "$nginx_vs_direct")"
if [[ -s $WORK/result-approuter-$CONNECTIONS && -s $WORK/result-nginx-$CONNECTIONS ]]; then
    # Each round's own ratio: how much of the spread is the machine's.
    per_round=$(paste -d' ' <(awk '{ print $1 }' "$WORK/result-approuter-$CONNECTIONS") \
        <(awk '{ print $1 }' "$WORK/result-nginx-$CONNECTIONS") |
        awk '$2 > 0 { printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $2 }')
    say "$(printf '%-48s %10s' "  the same, round by round" "$per_round")"
fi
if [[ -n $(result approuter_hyper "$CONNECTIONS" 0) ]]; then
    say "$(printf '%-48s %10s' "approuter / approuter hyper only, req/s (c=$CONNECTIONS)" \
        "$(ratio "$(result approuter "$CONNECTIONS" 0)" "$(result approuter_hyper "$CONNECTIONS" 0)")")"
    say "$(printf '%-48s %10s' "  the same, CPU per request" \
        "$(ratio "$(result approuter "$CONNECTIONS" 4)" "$(result approuter_hyper "$CONNECTIONS" 4)")")"
fi
if [[ -n $(result nginx_fwd "$CONNECTIONS" 0) ]]; then
    say "$(printf '%-48s %10s' "approuter / nginx with the same headers, req/s (c=$CONNECTIONS)" \
        "$(ratio "$(result approuter "$CONNECTIONS" 0)" "$(result nginx_fwd "$CONNECTIONS" 0)")")"
    say "$(printf '%-48s %10s' "  the same, CPU per request" \
        "$(ratio "$(result approuter "$CONNECTIONS" 4)" "$(result nginx_fwd "$CONNECTIONS" 4)")")"
fi
if [[ -n $(result approuter "$CONNECTIONS" 4) && -n $(result nginx "$CONNECTIONS" 4) ]]; then
    say "$(printf '%-48s %10s' "approuter / nginx proxy, CPU per request (c=$CONNECTIONS)" \
        "$(ratio "$(result approuter "$CONNECTIONS" 4)" "$(result nginx "$CONNECTIONS" 4)")")"
fi
h2_vs_nginx=$(ratio "$(result approuter_h2 "$CONNECTIONS" 0)" "$(result nginx_h2 "$CONNECTIONS" 0)")
v_h2=$(verdict "$h2_vs_nginx" ge "$TARGET_H2_RPS_RATIO")
if (( WITH_H2 )); then
    say "$(printf '%-48s %10s   %s' "approuter / nginx, HTTP/2 over TLS req/s (-c$H2_CONNECTIONS -m$H2_STREAMS)" "$h2_vs_nginx" "target >= $TARGET_H2_RPS_RATIO: $v_h2")"
    say "$(printf '%-48s %10s' "  the same, CPU per request" \
        "$(ratio "$(result approuter_h2 "$CONNECTIONS" 4)" "$(result nginx_h2 "$CONNECTIONS" 4)")")"
fi
if (( WITH_AUTH )); then
    say "$(printf '%-48s %10s   %s' "approuter auth / approuter public, req/s (c=$CONNECTIONS)" "$auth_vs_public" "target >= $TARGET_AUTH_RPS_RATIO: $v_auth")"
fi
v_mt="n/a"
if [[ -n $(result approuter_mt "$CONNECTIONS" 0) ]]; then
    mt_vs_auth=$(ratio "$(result approuter_mt "$CONNECTIONS" 0)" "$(result approuter_auth "$CONNECTIONS" 0)")
    v_mt=$(verdict "$mt_vs_auth" ge "$TARGET_MT_RPS_RATIO")
    say "$(printf '%-48s %10s   %s' "approuter multitenant / single-tenant auth, req/s" "$mt_vs_auth" "target >= $TARGET_MT_RPS_RATIO: $v_mt")"
fi
v_dest="n/a"
if [[ -n $(result approuter_dest "$CONNECTIONS" 0) ]]; then
    dest_vs_auth=$(ratio "$(result approuter_dest "$CONNECTIONS" 0)" "$(result approuter_auth "$CONNECTIONS" 0)")
    v_dest=$(verdict "$dest_vs_auth" ge "$TARGET_DEST_RPS_RATIO")
    say "$(printf '%-48s %10s   %s' "Destination service dest. / env dest., req/s (c=$CONNECTIONS)" "$dest_vs_auth" "target >= $TARGET_DEST_RPS_RATIO: $v_dest")"
    # What the Destination service and the token endpoint saw over every round: one user, so one
    # find per DESTINATION_CACHE_TTL and one exchanged token, whatever the request count.
    metrics=$(curl -s --max-time 5 "http://127.0.0.1:$APPROUTER_AUTH_ADMIN_PORT/metrics" || true)
    dest_requests=$(awk '/^approuter_requests_total\{route="1"/ { n += $2 } END { print n + 0 }' <<<"$metrics")
    lookups=$(awk '/^approuter_destination_lookups_total/ { n += $2 } END { print n + 0 }' <<<"$metrics")
    exchanges=$(awk '/^approuter_token_requests_total\{/ && /jwt/ { n += $2 } END { print n + 0 }' <<<"$metrics")
    say "$(printf '%-48s %10s' "  Destination service finds / requests" "$lookups / $dest_requests")"
    say "$(printf '%-48s %10s' "  token exchanges (jwt-bearer) / requests" "$exchanges / $dest_requests")"
fi
say "$(printf '%-48s %10s   %s' "approuter added p50 over direct (c=1), us" "$added_p50" "target <= $TARGET_ADDED_P50_US: $v_p50")"
say "$(printf '%-48s %10s' "nginx proxy added p50 over direct (c=1), us" "$nginx_added_p50")"
say "$(printf '%-48s %10s   %s' "approuter idle RSS, KiB" "$IDLE_RSS_KIB" "target <= $TARGET_IDLE_RSS_KIB: $v_rss")"
say "$(printf '%-48s %10s' "approuter RSS after load, KiB" "$LOADED_RSS_KIB")"
say "$(printf '%-48s %10s' "approuter peak RSS (VmHWM), KiB" "$PEAK_RSS_KIB")"
cp "$WORK/report.txt" "$REPORT"
echo "bench-load: report written to $REPORT" >&2

if [[ ${STRICT:-0} == 1 && ( $v_rps == MISSED || $v_p50 == MISSED || $v_rss == MISSED || $v_auth == MISSED || $v_h2 == MISSED || $v_dest == MISSED || $v_mt == MISSED ) ]]; then
    exit 3
fi
