#!/usr/bin/env bash
# Installs QEMU 10 (bookworm-backports) for aarch64, x86_64 and riscv64 (with OpenSBI, the
# firmware QEMU's `-bios default` loads on riscv64) and dtc from Debian packages when they
# are missing.
# Reuses the archive address the machine's own apt sources name, without touching its apt config.
set -euo pipefail
need_qemu=0
for q in qemu-system-aarch64 qemu-system-x86_64 qemu-system-riscv64; do
  if command -v "$q" >/dev/null 2>&1; then
    major=$("$q" --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1)
    [ "${major:-0}" -ge 10 ] || need_qemu=1
  else
    need_qemu=1
  fi
done
need_dtc=0
command -v dtc >/dev/null 2>&1 || need_dtc=1
[ "$need_qemu$need_dtc" = "00" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
d=/tmp/kmem-apt
mkdir -p "$d/lists/partial"
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$uri" ] || uri=http://deb.debian.org/debian
printf 'deb %s bookworm main\ndeb %s bookworm-backports main\n' "$uri" "$uri" >"$d/sources.list"
o="-o Dir::Etc::SourceList=$d/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$d/lists"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$sudo apt-get $o update -qq
pkgs=""
[ "$need_qemu" = 1 ] && pkgs="qemu-system-arm qemu-system-x86 qemu-system-misc opensbi"
[ "$need_dtc" = 1 ] && pkgs="$pkgs device-tree-compiler"
# shellcheck disable=SC2086
$sudo apt-get $o install -y -qq --no-install-recommends -t bookworm-backports $pkgs
