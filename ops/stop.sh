#!/usr/bin/env bash
# Stop the berth started by ops/run.sh (pid in /run/berth.pid): SIGTERM, so it
# stops taking messages and finishes what it holds, then SIGKILL after
# BERTH_STOP_TIMEOUT seconds (default 30). The system nginx, named and the
# databases keep running.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PID_FILE=/run/berth.pid
timeout=${BERTH_STOP_TIMEOUT:-30}

if [ ! -e "$PID_FILE" ]; then
  ok "berth is not running (no $PID_FILE)"
  exit 0
fi
pid=$(cat "$PID_FILE")
[[ $pid =~ ^[0-9]+$ ]] || { as_root rm -f "$PID_FILE"; die "bad pid file $PID_FILE (removed)"; }
# Only signal the process if it still is berth (pids get reused).
if ! kill -0 "$pid" 2>/dev/null && ! as_root kill -0 "$pid" 2>/dev/null \
  || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'berth.* serve'; then
  as_root rm -f "$PID_FILE"
  ok "berth is not running (stale $PID_FILE removed)"
  exit 0
fi

log "stopping berth (pid $pid)"
as_root kill -TERM "$pid"
deadline=$((SECONDS + timeout))
while [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    warn "berth did not stop within ${timeout}s: SIGKILL"
    as_root kill -KILL "$pid" 2>/dev/null || true
    break
  fi
  sleep 0.2
done
as_root rm -f "$PID_FILE"
did "stopped berth (pid $pid)"
