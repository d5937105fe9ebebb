# Sourced by the other scripts: makes a working `uv` the first one on PATH.
#
# Installs uv from PyPI with the interpreter at hand when it is missing. A pyenv shim
# named `uv` is skipped: it resolves per directory and fails inside projects whose
# .python-version names another interpreter, so the real binary's folder goes first.
ensure_uv() {
    local real=""
    if command -v uv >/dev/null 2>&1; then
        real=$(command -v uv)
        case "$real" in
        */shims/uv) real=$(pyenv which uv 2>/dev/null || true) ;;
        esac
    fi
    if [ -z "$real" ] || ! "$real" --version >/dev/null 2>&1; then
        echo "==> installing uv from PyPI" >&2
        python3 -m pip install --quiet --disable-pip-version-check uv
        real=$(python3 -c 'import uv; print(uv.find_uv_bin())')
    fi
    PATH="$(dirname "$real"):$PATH"
    export PATH
    hash -r
}
ensure_uv
