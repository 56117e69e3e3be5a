#!/usr/bin/env bash
# A two-minute tour: make a spool, submit a few jobs the way users do, drain it
# with pmjq, and show what the archive holds.
set -euo pipefail
pmjq() { node "$(dirname "$0")/../dist/bin.js" "$@"; }

demo=$(mktemp -d -t pmjq-demo-XXXXXX)
spool=$demo/spool archive=$demo/archive errors=$demo/errors
mkdir -p "$spool"

# Atomic submit: write under a hidden name, make it executable, rename.
submit() {
  local name=$1; shift
  printf '#!/bin/sh\n%s\n' "$*" > "$spool/.$name"
  chmod +x "$spool/.$name"
  mv "$spool/.$name" "$spool/$name"
}

submit hello      'echo "hello from $PMJQ_JOB on node $PMJQ_NODE"'
submit count      'for i in 1 2 3; do echo "tick $i"; sleep 0.2; done'
submit fails      'echo "this one exits 3" >&2; exit 3'
submit "odd name" 'echo "spaces are fine"'
echo "not a job: no execute bit" > "$spool/README.txt"

echo "== spool before: $spool"
ls -l "$spool"
echo
echo "== pmjq -j 2 -o archive -e errors --drain spool"
pmjq -j 2 -o "$archive" -e "$errors" --drain "$spool"
echo
echo "== archive ($archive)"
ls -1 "$archive"
echo
echo "== errors ($errors)"
ls -1 "$errors"
echo
echo "== a record:"
cat "$errors"/*_fails.json
echo
echo "== left in the spool (not jobs):"
ls -A "$spool"
echo
echo "Everything is in $demo"
