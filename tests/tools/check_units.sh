#!/usr/bin/env bash
# The shipped systemd units (tools/systemd/) verify with `systemd-analyze verify`, without a
# single warning (an unknown directive or system call group is only a warning to systemd), the
# template for an instance too. ExecStart points at the built writer.
#   check_units.sh SOURCE_DIR WRITER_BIN
set -euo pipefail
src=$1 writer=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze is missing (Debian package systemd)"
  [ -n "${POSCACHE_TESTS_NO_SKIP:-}" ] && exit 1
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in poscache-writer.service poscache-writer@.service; do
  sed "s|/usr/local/bin/poscache-writer|$writer|" "$src/tools/systemd/$f" > "$tmp/$f"
done
cd "$tmp"
for unit in poscache-writer.service poscache-writer@positions.service; do
  if ! out=$(systemd-analyze verify "./$unit" 2>&1) || [ -n "$out" ]; then
    echo "$unit does not verify:"
    echo "$out"
    exit 1
  fi
done
echo "check_units: poscache-writer.service and poscache-writer@.service verify"
