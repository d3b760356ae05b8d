#!/usr/bin/env bash
# Boots the firmware under QEMU with hostile input and checks what it did: the exit
# status, and lines the output must (or must not) hold. For `make hostile-test`,
# `make monitor-test` and `make boot-test`.
#
#   scripts/expect-boot.sh -n NAME [-s STATUS] [-t SECONDS] [-i INPUT] \
#       [-e REGEX]... [-f TEXT]... [-x REGEX]... -- QEMU COMMAND...
#
# -s  the status QEMU must end with (default 0), or a comma-separated list of those it
#     may end with; a hang ends with `timeout`'s 124
# -t  the time limit (default 60 s)
# -i  a file fed to QEMU's stdin (the console; default /dev/null)
# -e  an extended regular expression some output line must match (repeatable)
# -f  a fixed string some output line must contain (repeatable)
# -x  one no output line may match (repeatable)
# The output goes to build/hostile/NAME.log; on failure its tail is shown.
set -uo pipefail
name= status=0 limit=60 input=/dev/null
expect=() fixed=() refuse=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) name=$2; shift 2 ;;
    -s) status=$2; shift 2 ;;
    -t) limit=$2; shift 2 ;;
    -i) input=$2; shift 2 ;;
    -e) expect+=("$2"); shift 2 ;;
    -f) fixed+=("$2"); shift 2 ;;
    -x) refuse+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "expect-boot.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -n "$name" ] && [ $# -gt 0 ] || { echo "usage: $0 -n NAME [...] -- COMMAND..." >&2; exit 2; }
mkdir -p build/hostile
log=build/hostile/$name.log
start=$SECONDS
timeout "$limit" "$@" <"$input" >"$log" 2>&1
s=$?
# QEMU's console output ends lines with CR LF.
sed -i 's/\r$//' "$log"
fail=()
case ",$status," in
  *",$s,"*) ;;
  *) fail+=("exit status $s, expected $status$([ "$s" -eq 124 ] && echo " (timed out after $limit s)")") ;;
esac
for e in ${expect[@]+"${expect[@]}"}; do
  grep -Eq -- "$e" "$log" || fail+=("no line matches: $e")
done
for f in ${fixed[@]+"${fixed[@]}"}; do
  grep -Fq -- "$f" "$log" || fail+=("no line contains: $f")
done
for x in ${refuse[@]+"${refuse[@]}"}; do
  grep -Eq -- "$x" "$log" && fail+=("a line matches what must not appear: $x")
done
if [ ${#fail[@]} -eq 0 ]; then
  echo "expect-boot $name: ok ($((SECONDS - start)) s)"
  exit 0
fi
echo "expect-boot $name: FAILED ($log)"
printf '  %s\n' "${fail[@]}"
echo "  last lines of the output:"
tail -n 15 "$log" | cut -c1-200 | sed 's/^/    /'
exit 1
