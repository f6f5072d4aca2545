#!/usr/bin/env bash
# Drive berth's OpenAPI document against a running berth with schemathesis:
# every response must be one the document allows, no 5xx, every 4xx an
# application/problem+json body.
#
#   ops/schemathesis.sh                 # run (a few minutes), clean up, exit 1 on failures
#   ops/schemathesis.sh --keep          # leave berth running, the database, vhost and tmp dir
#   ops/schemathesis.sh --max-examples 20 --max-time 120 --seed 7
#
# Needs what ops/setup.sh installs (PostgreSQL, RabbitMQ with management, ...)
# and python3 with venv. It:
# 1. installs schemathesis (tests/schemathesis/requirements.txt) into target/schemathesis-venv
# 2. builds target/debug/berth if missing
# 3. makes a database berth_st_<random> and a RabbitMQ vhost of the same name, writes
#    nginx/named configs into a tmp dir (so workers never touch the system's), starts
#    `berth serve all` on a free loopback port, makes an admin token, seeds a server,
#    a platform and a task
# 4. runs `st run` against /api/v1/openapi.json (report in <tmp>/report)
# 5. prints a summary, stops berth, drops the database and vhost, removes the tmp dir
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BERTH_REPO_ROOT"

keep=0
max_examples=${ST_MAX_EXAMPLES:-50}
max_time=${ST_MAX_TIME:-240}
seed=${ST_SEED:-20261122}
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --keep) keep=1 ;;
    --max-examples) max_examples=$2; shift ;;
    --max-time) max_time=$2; shift ;;
    --seed) seed=$2; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
  shift
done

PG_BASE=${BERTH_ST_PG_BASE:-postgres://postgres@127.0.0.1:5432}
AMQP_BASE=${BERTH_ST_AMQP_BASE:-amqp://guest:guest@127.0.0.1:5672}
RABBIT_MGMT=${BERTH_ST_RABBIT_MGMT:-http://guest:guest@127.0.0.1:15672}
VENV=$BERTH_REPO_ROOT/target/schemathesis-venv
BIN=${BERTH_BIN:-$BERTH_REPO_ROOT/target/debug/berth}
REQS=$BERTH_REPO_ROOT/tests/schemathesis/requirements.txt

# ------------------------------------------------------------------ schemathesis
want=$(sed -n 's/^schemathesis==//p' "$REQS")
if [ -x "$VENV/bin/st" ] && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" = "$want" ]; then
  ok "schemathesis $want in $VENV"
else
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS"
  did "installed schemathesis $want into $VENV"
fi
ST=$VENV/bin/st

# ------------------------------------------------------------------ berth
if [ ! -x "$BIN" ]; then
  cargo build -q -p berth
  did "built $BIN"
fi

id=$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')
name=berth_st_$id
TMP=$(mktemp -d "${TMPDIR:-/tmp}/berth-st.XXXXXX")
chmod 755 "$TMP"
berth_pid=
cleanup() {
  local rc=$?
  if [ "$keep" = 1 ]; then
    log "--keep: berth pid ${berth_pid:-none} on ${API:-?}, database $name, vhost $name, dir $TMP"
    [ -n "${TOKEN:-}" ] && log "BERTH_API_URL=$API BERTH_TOKEN=$TOKEN"
    exit $rc
  fi
  if [ -n "$berth_pid" ] && kill -0 "$berth_pid" 2>/dev/null; then
    kill -TERM "$berth_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$berth_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$berth_pid" 2>/dev/null || true
  fi
  if [ -f "$TMP/nginx.pid" ]; then kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true; fi
  psql -q "$PG_BASE/postgres" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || warn "could not drop database $name"
  curl -fsS -o /dev/null -X DELETE "$RABBIT_MGMT/api/vhosts/$name" || warn "could not delete vhost $name"
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql -q "$PG_BASE/postgres" -c "CREATE DATABASE $name" >/dev/null
curl -fsS -o /dev/null -X PUT "$RABBIT_MGMT/api/vhosts/$name"
curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' \
  -d '{"configure":".*","write":".*","read":".*"}' "$RABBIT_MGMT/api/permissions/$name/guest"
did "database and vhost $name"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
web_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
API=http://127.0.0.1:$port

# Minimal nginx and named configurations, the shape tests/src/lib.rs writes.
vhosts=$TMP/config/server_master/nginx/vhost.d
mkdir -p "$vhosts" "$TMP/nginx-tmp" "$TMP/data"
cat >"$TMP/nginx.conf" <<EOF
# Written by ops/schemathesis.sh.
user www-data;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 512; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    server_names_hash_bucket_size 128;
    client_body_temp_path $TMP/nginx-tmp/client_body;
    proxy_temp_path $TMP/nginx-tmp/proxy;
    fastcgi_temp_path $TMP/nginx-tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx-tmp/uwsgi;
    scgi_temp_path $TMP/nginx-tmp/scgi;
    server {
        listen 127.0.0.1:$web_port default_server;
        server_name _;
        return 404 "no vhost for this host\n";
    }
    include $vhosts/*.conf;
}
EOF
cat >"$TMP/named.conf" <<EOF
options {
    directory "$TMP";
    pid-file "$TMP/named.pid";
    listen-on port 53530 { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
};
EOF

export BERTH_DATABASE_URL=$PG_BASE/$name
export BERTH_AMQP_URL=$AMQP_BASE/$name
export BERTH_LISTEN=127.0.0.1:$port
export BERTH_DATA_ROOT=$TMP/data
export BERTH_NGINX_CONF=$TMP/nginx.conf
export BERTH_NAMED_CONF=$TMP/named.conf
export BERTH_DIAGNOSTICS=false
export BERTH_SERVERS=server_master
BERTH_SECRET_KEY=$("$BIN" secret-key)
export BERTH_SECRET_KEY
export RUST_LOG=${RUST_LOG:-info}

"$BIN" serve all >"$TMP/berth.log" 2>&1 &
berth_pid=$!
for _ in $(seq 150); do
  curl -fsS -o /dev/null "$API/readyz" 2>/dev/null && break
  kill -0 "$berth_pid" 2>/dev/null || { tail -n 30 "$TMP/berth.log" >&2; die "berth exited"; }
  sleep 0.2
done
curl -fsS -o /dev/null "$API/readyz" || { tail -n 30 "$TMP/berth.log" >&2; die "berth not ready on $API"; }
did "berth serve all on $API (pid $berth_pid, log $TMP/berth.log)"

TOKEN=$("$BIN" token create --name st)
auth=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')

# ------------------------------------------------------------------ seed
seed_req() { # METHOD PATH [BODY]: prints the body; warns on a non-2xx
  local code
  code=$(curl -sS -o "$TMP/seed.out" -w '%{http_code}' "${auth[@]}" -X "$1" "$API$2" ${3:+-d "$3"})
  case $code in 2*) ;; *) warn "seed $1 $2: $code $(cat "$TMP/seed.out")" ;; esac
  cat "$TMP/seed.out"
}
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
# The tests' own MariaDB account (ops/test.sh makes it; so does this script when missing).
ensure_mariadb_test_account berth_test berth-test-password
db_service() { # PASSWORD
  printf '{"type":"mariadb","host":"127.0.0.1","port":3306,"admin_user":"berth_test","admin_password":"%s"}' "$1"
}
# server_master first with a wrong db password, so its verify leaves a dead letter; then the
# right one (the tests' account).
seed_req POST /api/v1/servers '{"name":"server_master","host":"localhost",
  "services":{"http":{"type":"nginx","port":'"$web_port"'},"db":'"$(db_service wrong)"',"dns":{"type":"bind"}}}' >/dev/null
for _ in $(seq 50); do
  [ "$(seed_req GET '/api/v1/dead-letters?limit=1' | jget 'd["total"]')" -gt 0 ] && break
  sleep 0.2
done
seed_req PATCH /api/v1/servers/server_master '{"services":{"db":'"$(db_service berth-test-password)"'}}' >/dev/null
mkdir -p "$TMP/data/platforms"   # a codebase in the data root must be below platforms/
cp -r tests/fixtures/platforms/drupal10 "$TMP/data/platforms/drupal10"
seed_req POST /api/v1/platforms '{"name":"platform_d10","root":"'"$TMP/data/platforms/drupal10"'","web_server":"server_master"}' >/dev/null
pstatus=
for _ in $(seq 100); do
  pstatus=$(seed_req GET /api/v1/platforms/platform_d10 | jget 'd["status"]')
  [ "$pstatus" = queued ] || [ "$pstatus" = verifying ] || break
  sleep 0.3
done
log "platform_d10 is $pstatus"
seed_req POST /api/v1/sites '{"uri":"www.example.com","platform":"platform_d10"}' >/dev/null
seed_req POST /api/v1/tasks '{"type":"noop","target":"server_master","args":{}}' >/dev/null
sleep 2
tasks=$(seed_req GET '/api/v1/tasks?limit=5' | jget '[t["id"] for t in d["items"]]')
dls=$(seed_req GET '/api/v1/dead-letters?limit=3' | jget '[x["id"] for x in d["items"]]')
sites=$(seed_req GET /api/v1/sites | jget '[x["uri"] for x in d]')
BERTH_ST_KNOWN=$(python3 -c 'import json,sys; print(json.dumps({"servers":["server_master"],"platforms":["platform_d10"],
  "sites":eval(sys.argv[1]),"tasks":eval(sys.argv[2]),"dead-letters":eval(sys.argv[3]),
  "clients":["default"]}))' "$sites" "$tasks" "$dls")
export BERTH_ST_KNOWN
export SCHEMATHESIS_HOOKS=berth_hooks
export PYTHONPATH=$BERTH_REPO_ROOT/tests/schemathesis${PYTHONPATH:+:$PYTHONPATH}
ok "seeded: $BERTH_ST_KNOWN"

# ------------------------------------------------------------------ run
report=$TMP/report
set +e
"$ST" run "$API/api/v1/openapi.json" \
  --url "$API" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$max_examples" \
  --seed "$seed" \
  --workers 1 \
  --max-time "$max_time" \
  --request-timeout 10 \
  --suppress-health-check all \
  --report junit,ndjson --report-dir "$report" \
  "${extra[@]}" 2>&1 | tee "$TMP/st.out"
st_rc=${PIPESTATUS[0]}
set -e

# ------------------------------------------------------------------ summary
echo
log "summary ($("$ST" --version))"
# schemathesis's own SUMMARY block: operations, phases, failures by kind, cases.
sed -n '/=\+ SUMMARY =\+/,$p' "$TMP/st.out" | grep -vE '^\s*$|^Reports:|^  - (JUnit|NDJSON)' || true
n500=$(grep -c 'berth_api::error: internal error' "$TMP/berth.log" || true)
log "berth logged $n500 internal (500) errors"
if [ "$st_rc" = 0 ]; then
  ok "schemathesis: no failures"
else
  warn "schemathesis exited $st_rc (berth log: $TMP/berth.log; rerun with --keep to keep it)"
fi
exit "$st_rc"
