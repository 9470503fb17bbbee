#!/usr/bin/env bash
# The suite in two runs (make test): first every test that needs no Celery worker process and no
# browser, spread over $TEST_PROCESSES processes (pytest-xdist); then the worker and browser tests,
# one at a time, since they share one broker and start real processes. Arguments go to both
# runs (a path, -k, -x ...). The exit code is the worse of the two; a run that selects no test
# (say, a path with no browser tests) counts as passed unless neither run found any.
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PROCESSES="${TEST_PROCESSES:-2}"

"$PY" -m pytest -q -n "$PROCESSES" -m "not worker and not browser" "$@"
first=$?
"$PY" -m pytest -q -m "worker or browser" "$@"
second=$?

if [ "$first" -eq 5 ] && [ "$second" -eq 5 ]; then exit 5; fi
[ "$first" -eq 5 ] && first=0
[ "$second" -eq 5 ] && second=0
if [ "$first" -ne 0 ]; then exit "$first"; fi
exit "$second"
