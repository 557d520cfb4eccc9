#!/usr/bin/env bash
# Start PostgreSQL and Redis on 127.0.0.1 when they are down; fail (exit 1) when
# they stay unreachable. Tests never skip for a missing service.
set -u
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up; then
  echo "PostgreSQL is down: starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! redis_up; then
  echo "Redis is down: starting it"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi
for _ in $(seq 1 30); do
  if pg_up && redis_up; then
    echo "services: PostgreSQL 127.0.0.1:5432 and Redis 127.0.0.1:6379 are up"
    exit 0
  fi
  sleep 1
done
pg_up || echo "ERROR: PostgreSQL at 127.0.0.1:5432 is unreachable" >&2
redis_up || echo "ERROR: Redis at 127.0.0.1:6379 is unreachable" >&2
exit 1
