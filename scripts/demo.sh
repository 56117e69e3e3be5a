#!/usr/bin/env bash
# A two-minute tour: a spool, jobs dropped in and submitted, pmjq running them
# one at a time; status while one waits, a cancel, output captured with
# --wait, a failure retried, a held job run after another and followed;
# then a --drain, and what the archive holds.
set -euo pipefail
bin=$(dirname "$0")/../dist/bin.js
pmjq() { node "$bin" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
[ -t 2 ] && [ -z "${NO_COLOR-}" ] && [ "${TERM-}" != dumb ] || say() { printf '\n== %s\n' "$*" >&2; }

demo=$(mktemp -d -t pmjq-demo-XXXXXX)
spool=$demo/spool archive=$demo/archive errors=$demo/errors
mkdir -p "$spool"

say "pmjq -j 1 -o archive -e errors spool &    (one job at a time; its log in $demo/pmjq.log)"
# node itself in the background (not a subshell running it), so that kill reaches pmjq.
node "$bin" -j 1 -o "$archive" -e "$errors" "$spool" 2>"$demo/pmjq.log" &
daemon=$!
trap 'kill "$daemon" 2>/dev/null || true' EXIT

say "pmjq submit: a command, queued under a unique name"
slow=$(pmjq submit --name slow "$spool" -- sleep 6)
echo "$slow"
later=$(pmjq submit --name later "$spool" -- echo "never runs")
echo "$later"
# Dropping a file works too: write it aside, make it executable, rename it in.
printf '#!/bin/sh\necho "this one exits 3" >&2\nexit 3\n' >"$spool/.fails"
chmod +x "$spool/.fails" && mv "$spool/.fails" "$spool/fails"
echo "fails (dropped in)"

# Wait until pmjq has claimed the slow job, so that status shows why the rest wait.
until pmjq status --json "$spool" | grep -q '"running": \[$'; do sleep 0.2; done
say "pmjq status spool"
pmjq status "$spool"

say "pmjq cancel spool later     (a unique prefix of the name is enough)"
pmjq cancel "$spool" later

say 'out=$(pmjq submit --wait spool -- echo hello)    (its name on stderr, its output on stdout)'
out=$(pmjq submit --wait "$spool" -- sh -c 'echo "hello from $PMJQ_JOB"')
echo "out=$out"

say "pmjq retry --wait spool ERROR-ENTRY    (the failed job, queued again)"
entry=$(ls "$errors"/*_fails.json | head -n 1)
pmjq retry --wait "$spool" "${entry%.json}" || echo "(exit status $?: it failed again, as it always will)"

say 'a chain: test --after build, held until released; pmjq log -f on it'
build=$(pmjq submit --name build "$spool" -- sh -c 'sleep 1; echo built')
test=$(pmjq submit --name test --after "$build" --hold "$spool" -- echo "tests pass")
pmjq status "$spool"
pmjq release "$spool" "$test"
pmjq log -f "$spool" "$test"

kill "$daemon" && wait "$daemon" || true
trap - EXIT

say "two more dropped in, then: pmjq --drain spool    (exit 1 if any job did not succeed)"
for i in 1 2; do
  printf '#!/bin/sh\necho "batch job %s"\n' "$i" >"$spool/.batch$i"
  chmod +x "$spool/.batch$i" && mv "$spool/.batch$i" "$spool/batch$i"
done
pmjq -o "$archive" -e "$errors" --drain "$spool" 2>&1 | grep -v ' INFO ' || true

say "archive ($archive)"
ls -1 "$archive"
say "errors ($errors)"
ls -1 "$errors"
say "a record:"
cat "$(ls "$errors"/*_fails.json | head -n 1)"
echo
echo "Everything is in $demo" >&2
