#!/usr/bin/env bash
# Install llama-cpp-python WITHOUT compiling llama.cpp: the pure-Python bindings of llama-cpp-python 0.3.36 (from
# its sdist, packaged with scikit-build-core's wheel.cmake=false: no CMake, no compiler) + the prebuilt x86-64 Linux
# CPU libraries that node-llama-cpp publishes on npm (@node-llama-cpp/linux-x64 3.22.1 = llama.cpp v0.5.0, built on
# Ubuntu 22.04: needs glibc >= 2.34, libstdc++ >= GLIBCXX_3.4.29 — Debian 12 is fine).
# The libraries go into the wheel's llama_cpp/lib, where llama_cpp looks by default: nothing to set at runtime.
# Two small patches to the Python sources (see patch_sources below) make 0.3.36's bindings run on v0.5.0.
#
# usage: install_llama_cpp.sh [CACHE_DIR]      (default ~/.cache/myllm-llama-cpp; PYTHON=... picks the interpreter)
# LLAMA_CPU_VARIANTS: which of the npm package's libggml-cpu-<variant>.so to ship; ggml loads the best one this CPU
#   supports. Default "haswell sse42 x64": AVX2/FMA/F16C at most, the instruction level of the former source build
#   (GGML_NATIVE=OFF), so quantized results match the documented figures on every x86-64 machine (the AVX-512 variants,
#   e.g. zen4, round Q8_0 differently: SmolLM2 Q8_0 top-1 agreement 95.6 % instead of 97.0 %). "all" ships all 14.
# Idempotent: the assembled wheel is cached in CACHE_DIR and reinstalled from there (a few seconds).
set -euo pipefail
PYTHON="${PYTHON:-python}"
CACHE="${1:-${HOME}/.cache/myllm-llama-cpp}"
LCP_VERSION=0.3.36                      # llama-cpp-python (bindings) — vendors llama.cpp 0.5.0-dev @0c1e57098
LCP_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
NLC_VERSION=3.22.1                      # @node-llama-cpp/linux-x64 — llama.cpp v0.5.0 (LLAMA_COMMIT 0ad4a86)
NLC_SHA256=0d953e1503d5ab4608d8ed5b739132308c81ac05ffeb760d2a7f30e08a9f90e0
NLC_URL="https://registry.npmjs.org/@node-llama-cpp/linux-x64/-/linux-x64-${NLC_VERSION}.tgz"
LLAMA_CPU_VARIANTS="${LLAMA_CPU_VARIANTS:-haswell sse42 x64}"
WHEEL_DIR="$CACHE/wheel-${LCP_VERSION}-nlc${NLC_VERSION}-cpu-$(echo $LLAMA_CPU_VARIANTS | tr ' ' '-')"
WHEEL="$WHEEL_DIR/llama_cpp_python-${LCP_VERSION}-py3-none-any.whl"
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$(date +%s)
mkdir -p "$CACHE"

if [ "$(uname -sm)" != "Linux x86_64" ]; then
    echo "install_llama_cpp.sh: prebuilt libraries are for Linux x86-64 only (this is $(uname -sm))" >&2; exit 1
fi

patch_sources() {   # $1 = the llama_cpp package folder
    "$PYTHON" - "$1" <<'EOF'
import pathlib, sys
pkg, mark = pathlib.Path(sys.argv[1]), "# prebuilt-llama.cpp patch"
# 1. 0.3.36 binds 14 functions that llama.cpp v0.5.0 does not export yet (llama_batch_ext_*, llama_process,
#    llama_get_causal_attn; the high-level Llama class uses none of them): bind them to stubs that raise when called,
#    instead of failing `import llama_cpp` with AttributeError
ext = pkg / "_ctypes_extensions.py"
src = ext.read_text()
old = "            if enabled:\n                func = getattr(lib, name)\n"
if mark not in src:
    assert src.count(old) == 1, f"{ext} changed: update the patch"
    ext.write_text(src.replace(old, f"            if enabled and not hasattr(lib, name):  {mark}\n"
        "                def _missing(*args, **kwargs):\n"
        "                    raise NotImplementedError(\n"
        "                        f\"{name} is not exported by {lib._name} (prebuilt llama.cpp older than the bindings)\")\n"
        "                return functools.wraps(f)(_missing)\n" + old))
# 2. the prebuilt ggml is a GGML_BACKEND_DL build: the CPU code lives in libggml-cpu-<variant>.so (14 x86 levels;
#    ggml scores them and loads the best one), but ggml searches only the executable's folder and the cwd, so
#    llama_backend_init (which Llama() calls, output suppressed unless verbose) first loads them from the folder
#    libllama came from
mod = pkg / "llama_cpp.py"
src = mod.read_text()
old = '    """Initialize the llama + ggml backend\n    Call once at the start of the program"""\n    ...\n'
if mark not in src:
    assert src.count(old) == 1, f"{mod} changed: update the patch"
    mod.write_text(src.replace(old, old + f"""

{mark}: a GGML_BACKEND_DL build links no backend; load the best CPU variant from the lib folder
_llama_backend_init_c = llama_backend_init


def llama_backend_init():
    \"\"\"Initialize the llama + ggml backend (first loading the ggml backends next to libllama)
    Call once at the start of the program\"\"\"
    if hasattr(_lib, "ggml_backend_load_all_from_path"):
        _lib.ggml_backend_reg_count.restype = ctypes.c_size_t
        if _lib.ggml_backend_reg_count() == 0:
            _lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
            _lib.ggml_backend_load_all_from_path(str(_base_path).encode())
    _llama_backend_init_c()
"""))
EOF
}

fetch_checked() {   # $1 = file, $2 = sha256, $3... = command that creates the file
    local file=$1 sum=$2; shift 2
    if [ -f "$file" ] && echo "$sum  $file" | sha256sum -c --status; then return; fi
    rm -f "$file"; "$@"
    echo "$sum  $file" | sha256sum -c --quiet
}

if [ ! -f "$WHEEL" ]; then
    # npm's registry serves the package as a plain tarball: npm is not needed (npm pack would fetch the same file)
    fetch_checked "$CACHE/node-llama-cpp-linux-x64-${NLC_VERSION}.tgz" "$NLC_SHA256" \
        "$PYTHON" -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
        "$NLC_URL" "$CACHE/node-llama-cpp-linux-x64-${NLC_VERSION}.tgz"
    fetch_checked "$CACHE/llama_cpp_python-${LCP_VERSION}.tar.gz" "$LCP_SHA256" \
        "$PYTHON" -m pip download -q --no-binary :all: --no-deps -d "$CACHE" \
        "llama-cpp-python==${LCP_VERSION}"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # only the Python package and its metadata: the 76 MB sdist is mostly vendor/llama.cpp, not needed
    src="$work/llama_cpp_python-${LCP_VERSION}"
    tar xzf "$CACHE/llama_cpp_python-${LCP_VERSION}.tar.gz" -C "$work" \
        "llama_cpp_python-${LCP_VERSION}/pyproject.toml" "llama_cpp_python-${LCP_VERSION}/README.md" \
        "llama_cpp_python-${LCP_VERSION}/LICENSE.md" "llama_cpp_python-${LCP_VERSION}/llama_cpp"
    tar xzf "$CACHE/node-llama-cpp-linux-x64-${NLC_VERSION}.tgz" -C "$work" package/bins/linux-x64
    bins="$work/package/bins/linux-x64"
    mkdir -p "$src/llama_cpp/lib"
    # libllama under the name llama_cpp loads (its SONAME stays libllama.v0.5.0.so; nothing else links to it);
    # libggml.v0.5.0.so keeps its name (libllama's DT_NEEDED; RUNPATH $ORIGIN finds it next to libllama.so)
    cp "$bins"/libllama.v*.so "$src/llama_cpp/lib/libllama.so"
    cp "$bins"/libggml.v*.so "$bins"/libggml-base.so "$src/llama_cpp/lib/"
    if [ "$LLAMA_CPU_VARIANTS" = all ]; then
        cp "$bins"/libggml-cpu-*.so "$src/llama_cpp/lib/"
    else
        for variant in $LLAMA_CPU_VARIANTS; do cp "$bins/libggml-cpu-$variant.so" "$src/llama_cpp/lib/"; done
    fi
    patch_sources "$src/llama_cpp"
    # wheel.cmake=false: scikit-build-core packages llama_cpp/ (now with lib/) and runs neither CMake nor a compiler
    "$PYTHON" -m pip wheel -q --no-deps -w "$work/out" --config-settings=wheel.cmake=false "$src"
    mkdir -p "$WHEEL_DIR"
    mv "$work/out/llama_cpp_python-${LCP_VERSION}-py3-none-any.whl" "$WHEEL"
fi

"$PYTHON" -m pip install -q --no-deps --force-reinstall "$WHEEL"
"$PYTHON" -m pip install -q "typing-extensions>=4.5.0" "numpy>=1.20.0" "diskcache>=5.6.1" "jinja2>=2.11.3"
# smoke check (from a neutral cwd): the bindings import, and a CPU backend variant loads
(cd / && "$PYTHON" -c "
import llama_cpp
llama_cpp.llama_backend_init()
n = llama_cpp.llama_cpp._lib.ggml_backend_reg_count()
assert n > 0, 'no ggml backend loaded'
print(f'llama-cpp-python {llama_cpp.__version__} on prebuilt llama.cpp {llama_cpp.llama_version().decode()}'
      f' ({n} ggml backend(s)); system info: {llama_cpp.llama_print_system_info().decode().strip()}')")
echo "install_llama_cpp.sh: done in $(( $(date +%s) - start )) s (cache: $CACHE)"
