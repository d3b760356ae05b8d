#!/usr/bin/env bash
# Boots a machine that must end one known way, for `make boot-test`: runs the command after
# `--` under `timeout`, keeps what it printed in LOG, and passes only when it exited with
# STATUS (a number, or `fail` for any failing status but a timeout's 124 and QEMU's own
# launch errors) and printed every PATTERN (fixed strings).
#
#   expect-boot.sh NAME LOG STATUS [PATTERN...] -- COMMAND...
set -uo pipefail
name=$1 log=$2 want=$3
shift 3
patterns=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  patterns+=("$1")
  shift
done
[ "${1:-}" = "--" ] || { echo "expect-boot.sh: no -- before the command" >&2; exit 2; }
shift
mkdir -p "$(dirname "$log")"
timeout "${BOOT_TIMEOUT:-30}" "$@" </dev/null >"$log" 2>&1
status=$?
ok=1
case $want in
  fail) [ $status -ne 0 ] && [ $status -ne 124 ] && ! grep -q '^qemu-system' "$log" || ok=0 ;;
  *) [ $status -eq "$want" ] || ok=0 ;;
esac
missing=()
for p in "${patterns[@]}"; do
  grep -qF -- "$p" "$log" || { ok=0; missing+=("$p"); }
done
if [ $ok -eq 1 ]; then
  echo "boot-test $name ... ok (status $status)"
  exit 0
fi
echo "boot-test $name ... FAILED: status $status (expected $want)"
for p in "${missing[@]}"; do echo "  missing: $p"; done
echo "  last lines of $log:"
tail -n 15 "$log" | sed 's/^/    /'
exit 1
