"""How pip builds poscache (pyproject.toml holds the static metadata): the package poscache
from reader/python/poscache/, and its extension module poscache._poscache, which CMake builds
(target poscache_python, reader/python/*.cpp) in a build tree under setuptools' build temp.

    python3 -m venv ~/venv && ~/venv/bin/pip install --no-build-isolation --no-index .

POSCACHE_CMAKE_BUILD_DIR=DIR takes the module from DIR, a build tree already configured (the
test suite's), where only `cmake --build DIR --target poscache_python` runs: nothing is built
twice. The interpreter must then be the one DIR was configured with (its extension suffix is
checked).

Debian 12's venv holds pip and setuptools 66 but not the `wheel` package, which setuptools
before 70.1 needs for bdist_wheel, and --no-index cannot fetch it: PlainWheel below packs the
wheel then (PEP 427), from what setuptools built and the metadata it wrote."""
import base64
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from importlib.util import find_spec

from setuptools import Command, Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def project():
    """(version, description) of CMakeLists.txt's project(): the one place they are written."""
    with open(os.path.join(HERE, "CMakeLists.txt"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r'^project\(poscache\s+VERSION\s+(\d+\.\d+\.\d+)\s+DESCRIPTION\s+"([^"]+)"',
                  text, re.MULTILINE)
    if m is None:
        sys.exit("setup.py: CMakeLists.txt has no "
                 '`project(poscache VERSION x.y.z DESCRIPTION "...")`')
    return m.group(1), m.group(2)


def run(cmd):
    print("setup.py: " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


class CMakeBuild(build_ext):
    """Builds poscache._poscache with CMake and puts it where setuptools packs it from."""

    def build_extension(self, ext):
        cmake = shutil.which("cmake")
        if cmake is None:
            sys.exit("setup.py: cmake not found (Debian: apt-get install cmake; scripts/deps.sh "
                     "lists every package the build needs)")
        build_dir = os.environ.get("POSCACHE_CMAKE_BUILD_DIR")
        if build_dir:
            if not os.path.isfile(os.path.join(build_dir, "CMakeCache.txt")):
                sys.exit(f"setup.py: POSCACHE_CMAKE_BUILD_DIR={build_dir} is not a configured "
                         "CMake build tree (no CMakeCache.txt)")
        else:
            build_dir = os.path.join(os.path.abspath(self.build_temp), "cmake")
            # The module alone: no tests, benchmarks or programs (nor the packages they need).
            run([cmake, "-S", HERE, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                 "-DPOSCACHE_BUILD_TESTS=OFF", "-DPOSCACHE_BUILD_BENCH=OFF",
                 "-DPOSCACHE_BUILD_TOOLS=OFF", "-DPython3_EXECUTABLE=" + sys.executable])
        build = [cmake, "--build", build_dir, "--target", "poscache_python"]
        if "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ:
            build += ["--parallel", str(os.cpu_count() or 1)]
        run(build)
        name = "_poscache" + sysconfig.get_config_var("EXT_SUFFIX")
        built = os.path.join(build_dir, "python", "poscache", name)
        if not os.path.isfile(built):
            there = sorted(f for f in os.listdir(os.path.dirname(built)) if f.endswith(".so"))
            sys.exit(f"setup.py: expected {built} (this interpreter's extension suffix); found "
                     f"{', '.join(there) or 'no module'}: was {build_dir} configured for another "
                     "Python?")
        dest = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(built, dest)


def wheel_tag():
    """This interpreter's tag, e.g. cp311-cp311-linux_x86_64 (a CPython extension module)."""
    if sys.implementation.name != "cpython":
        sys.exit("setup.py: the extension module is built for CPython")
    py = "cp%d%d" % sys.version_info[:2]
    platform = re.sub(r"[-.]", "_", sysconfig.get_platform())
    return f"{py}-{py}{sys.abiflags}-{platform}"


class PlainWheel(Command):
    """bdist_wheel without the `wheel` package, for setuptools < 70.1 (see the top)."""

    description = "pack the built package as a wheel (no `wheel` package needed)"
    user_options = [("dist-dir=", "d", "where the wheel goes")]

    def initialize_options(self):
        self.dist_dir = None

    def finalize_options(self):
        if self.dist_dir is None:
            self.dist_dir = "dist"

    def egg2dist(self, egg_info, dist_info):
        """The .dist-info from the .egg-info setuptools wrote (the dist_info command calls this
        too: pip asks for the metadata first). No dependencies: PKG-INFO is the METADATA."""
        os.makedirs(dist_info, exist_ok=True)
        shutil.copyfile(os.path.join(egg_info, "PKG-INFO"), os.path.join(dist_info, "METADATA"))
        for licence in self.distribution.metadata.license_files or []:
            shutil.copy(os.path.join(HERE, licence), dist_info)
        shutil.rmtree(egg_info)

    def run(self):
        self.run_command("build")
        build = self.get_finalized_command("build")
        files = (self.get_finalized_command("build_py").get_outputs(include_bytecode=False)
                 + self.get_finalized_command("build_ext").get_outputs())
        meta = self.distribution.metadata
        name = re.sub(r"[^\w.]+", "_", meta.get_name())
        stem = f"{name}-{meta.get_version()}"
        with tempfile.TemporaryDirectory(prefix="poscache-wheel-") as tmp:
            egg_info = self.reinitialize_command("egg_info")
            egg_info.egg_base = tmp
            self.run_command("egg_info")
            dist_info = f"{stem}.dist-info"
            self.egg2dist(self.get_finalized_command("egg_info").egg_info,
                          os.path.join(tmp, dist_info))
            with open(os.path.join(tmp, dist_info, "WHEEL"), "w", encoding="utf-8") as f:
                f.write("Wheel-Version: 1.0\nGenerator: poscache setup.py (PlainWheel)\n"
                        f"Root-Is-Purelib: false\nTag: {wheel_tag()}\n")
            entries = [(os.path.relpath(p, build.build_lib), p) for p in files]
            entries += [(f"{dist_info}/{f}", os.path.join(tmp, dist_info, f))
                        for f in sorted(os.listdir(os.path.join(tmp, dist_info)))]
            os.makedirs(self.dist_dir, exist_ok=True)
            wheel = os.path.join(self.dist_dir, f"{stem}-{wheel_tag()}.whl")
            record = f"{dist_info}/RECORD"
            with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
                rows = []
                for arcname, path in entries:
                    with open(path, "rb") as f:
                        data = f.read()
                    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                    rows.append((arcname, "sha256=" + digest.decode(), str(len(data))))
                    z.write(path, arcname)
                rows.append((record, "", ""))
                text = io.StringIO()
                csv.writer(text, lineterminator="\n").writerows(rows)
                z.writestr(record, text.getvalue())
        print(f"setup.py: wrote {wheel}", flush=True)


version, description = project()
# setuptools' own tree, its .egg-info included (nothing is written beside the sources): beside a
# given CMake tree, else build-pip/ (build/ is where the README's CMake build goes; /build*/ is
# ignored by git).
if os.environ.get("POSCACHE_CMAKE_BUILD_DIR"):
    build_base = os.path.join(os.path.abspath(os.environ["POSCACHE_CMAKE_BUILD_DIR"]), "setuptools")
else:
    build_base = os.path.join(HERE, "build-pip")
os.makedirs(build_base, exist_ok=True)
cmdclass = {"build_ext": CMakeBuild}
if find_spec("setuptools.command.bdist_wheel") is None and find_spec("wheel") is None:
    cmdclass["bdist_wheel"] = PlainWheel
setup(
    version=version,
    description=description,
    ext_modules=[Extension("poscache._poscache", sources=[])],
    cmdclass=cmdclass,
    options={"build": {"build_base": build_base}, "egg_info": {"egg_base": build_base}},
)
