#!/usr/bin/env bash
# `make demo`: the tracker on its embedded default (SQLite, filesystem broker, media under var/).
# Migrates, seeds a SYNTHETIC PHANTOM cohort, starts one worker for every queue, waits until
# each visit is analysed and assessed, prints the figures, then serves the pages and the API
# until Ctrl-C
# (DEMO_SERVE=0 stops after the summary).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
PORT="${DEMO_PORT:-8000}"
mkdir -p var
"$PY" manage.py migrate --noinput -v 0
"$PY" manage.py demo --patients "${DEMO_PATIENTS:-2}" --visits "${DEMO_VISITS:-3}"
# The worker's banner, TensorFlow's start-up lines and its log go to var/demo-worker.log; the
# console shows the progress and the summary.
echo "worker log: var/demo-worker.log"
TF_CPP_MIN_LOG_LEVEL=2 "$PY" -m celery -A config --quiet worker -Q gpu,cpu,default --pool=solo \
    --loglevel=INFO --logfile var/demo-worker.log >> var/demo-worker.log 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null || true; wait $worker 2>/dev/null || true' EXIT
sleep 3
if ! kill -0 "$worker" 2>/dev/null; then
    echo "the worker did not start; the end of var/demo-worker.log:" >&2
    tail -n 5 var/demo-worker.log >&2
    exit 1
fi
"$PY" manage.py demo --patients 0 --wait --timeout "${DEMO_TIMEOUT:-3600}"
"$PY" manage.py demo_summary
echo "pages:      http://127.0.0.1:$PORT/patients/   (log in as demo / demo-tracker-2026)"
echo "API:        http://127.0.0.1:$PORT/api/patients/   (docs: /api/docs/)"
if [ "${DEMO_SERVE:-1}" != "0" ]; then
    "$PY" manage.py runserver "127.0.0.1:$PORT"
fi
