#!/usr/bin/env bash
# Installs the build tree into a scratch prefix and builds two consumers against it.
set -euo pipefail
build=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
"${CMAKE:-cmake}" --install "$build" --prefix "$work/prefix" >/dev/null
here=$(cd "$(dirname "$0")" && pwd)
# The systemd units point at the binary of the prefix they were installed into.
for unit in poscache-writer.service poscache-writer@.service; do
  grep -q "^ExecStart=$work/prefix/bin/poscache-writer " "$work/prefix/lib/systemd/system/$unit" || {
    echo "$unit: ExecStart is not $work/prefix/bin/poscache-writer:"
    grep ExecStart "$work/prefix/lib/systemd/system/$unit"
    exit 1
  }
done
# CONSUMER_FLAGS: the sanitizer flags the libraries were built with, if any.
"${CMAKE:-cmake}" -S "$here/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_CXX_COMPILER="${CXX:-c++}" -DCMAKE_CXX_FLAGS="${CONSUMER_FLAGS:-}" \
  -DCMAKE_C_COMPILER="${CC:-cc}" -DCMAKE_C_FLAGS="${CONSUMER_FLAGS:-}" \
  -DCMAKE_EXE_LINKER_FLAGS="${CONSUMER_FLAGS:-}" >/dev/null
"${CMAKE:-cmake}" --build "$work/consumer" >/dev/null
"$work/consumer/consumer"
"$work/consumer/c_consumer"
# A project of C alone.
"${CMAKE:-cmake}" -S "$here/c_only" -B "$work/c_only" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_C_COMPILER="${CC:-cc}" -DCMAKE_C_FLAGS="${CONSUMER_FLAGS:-}" \
  -DCMAKE_EXE_LINKER_FLAGS="${CONSUMER_FLAGS:-}" >/dev/null
"${CMAKE:-cmake}" --build "$work/c_only" >/dev/null
"$work/c_only/c_only_consumer"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
"${CXX:-c++}" ${CONSUMER_FLAGS:-} "$here/pkgconfig_consumer.cpp" -o "$work/pkgconfig_consumer" $(pkg-config --cflags --libs poscache)
"$work/pkgconfig_consumer"
# A writer through pkg-config alone: the link order it gives must resolve (writer, reader, core,
# hiredis), with nothing added by hand.
"${CXX:-c++}" ${CONSUMER_FLAGS:-} "$here/pkgconfig_writer_consumer.cpp" -o "$work/pkgconfig_writer_consumer" \
  $(pkg-config --cflags --libs poscache-writer)
"$work/pkgconfig_writer_consumer"
# The C interface through pkg-config: a C compiler, no C++ flags, the C++ runtime from Libs.
"${CC:-cc}" ${CONSUMER_FLAGS:-} -std=c11 -Wall -Werror "$here/c_consumer.c" -o "$work/c_consumer" \
  $(pkg-config --cflags --libs poscache-c)
"$work/c_consumer"
# The Python package, when the build has it: the extension module beside __init__.py, the stubs
# and py.typed, imported from the prefix alone by the interpreter it was built for (PYTHON).
package=$(find "$work/prefix/lib" -path '*/dist-packages/poscache' -type d)
python_check=""
if [ -n "$package" ]; then
  for f in __init__.py __init__.pyi py.typed; do
    [ -f "$package/$f" ] || { echo "install check: no $f in $package"; exit 1; }
  done
  (cd "$work" && env -u PYTHONPATH PYTHONPATH="$(dirname "$package")" "${PYTHON:-python3}" -s -c '
import os, sys, poscache
assert os.path.dirname(poscache.__file__) == sys.argv[1], poscache.__file__
assert os.path.dirname(poscache._poscache.__file__) == sys.argv[1], poscache._poscache.__file__
' "$package")
  python_check="; the Python package imported"
fi
echo "install check: the CMake consumers (C++ and C, and C alone) and the three pkg-config consumers (C++, writer, C)" \
  "built and ran$python_check"
