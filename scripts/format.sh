#!/usr/bin/env bash
# The sources in the checked-in .clang-format style.
#   scripts/format.sh          reformat in place
#   scripts/format.sh --check  change nothing; fail, naming the files, if any is not formatted
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || "$PWD/scripts/deps.sh"
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.c' '*.h' | grep -E '^(shm|reader|writer|tools|include|tests|bench)/')
if [ "${1:-}" = "--check" ]; then
  clang-format --dry-run --Werror "${files[@]}"
  echo "format: ${#files[@]} files in the .clang-format style"
else
  clang-format -i "${files[@]}"
fi
