#!/usr/bin/env bash
# Make sure the project's environment (.venv/ in the checkout) is complete,
# then run the given command inside it:
#
#     bash tools/env.sh python tools/demo.py
#     bash tools/env.sh python -m pytest tests
#
# What it installs when missing (each step is skipped when already satisfied):
#   * Python 3.11 virtual environment in .venv/ (PYTHON=... picks the interpreter);
#   * torch 2.13.0, only when no torch is importable (a present CPU/CUDA build is kept);
#   * mmcv 2.1.0 with compiled ops: a wheel from PLUGINS_FIND_LINKS when one is found
#     and works with this torch, otherwise built from source (ops on, no build
#     isolation, setuptools < 70), with progress;
#   * the project with every host library and TensorBoard, pinned by tools/constraints.txt;
#   * the system library libusb-1.0-0 that open3d loads (apt-get, when root).
#
# Environment:
#   PLUGINS_FIND_LINKS  space-separated folders of extra wheels (added to pip's own
#                       find-links on the command line, never through PIP_FIND_LINKS)
#   PYTHON              interpreter for a new .venv (default: python3.11, else python3)
#   PLUGINS_VENV        venv folder (default: .venv in the checkout)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PLUGINS_VENV:-$ROOT/.venv}"
say() { printf '\033[1m[env]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[env] error:\033[0m %s\n' "$*" >&2; exit 1; }

find_links=()
for d in ${PLUGINS_FIND_LINKS:-}; do
    if [ -d "$d" ]; then find_links+=(--find-links "$(cd "$d" && pwd)");
    else say "PLUGINS_FIND_LINKS: '$d' is not a folder, ignored"; fi
done

# ---------------------------------------------------------------- virtualenv
if [ ! -x "$VENV/bin/python" ]; then
    py="${PYTHON:-}"
    if [ -z "$py" ]; then
        if command -v python3.11 >/dev/null; then py=python3.11; else py=python3; fi
    fi
    command -v "$py" >/dev/null || die "no Python interpreter '$py' (set PYTHON=/path/to/python3.11)"
    ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [ "$ver" = "3.11" ] || say "warning: $py is Python $ver; the pinned stack is tested on 3.11"
    say "creating $VENV with $py ($ver)"
    "$py" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

stamp_of() {
    cat "$ROOT/pyproject.toml" "$ROOT/tools/constraints.txt" "$ROOT/tools/env.sh" \
        | sha256sum | cut -c1-16
}
STAMP_FILE="$VENV/.plugins-env"
want="$(stamp_of)"

if [ "$(cat "$STAMP_FILE" 2>/dev/null)" != "$want" ]; then
    t0=$SECONDS
    # ------------------------------------------------------------- torch
    if torch_ver="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"; then
        say "keeping the installed torch $torch_ver"
    else
        say "installing torch 2.13.0"
        "${PIP[@]}" install "${find_links[@]}" torch==2.13.0
        torch_ver="$("$PY" -c 'import torch; print(torch.__version__)')"
    fi
    cons="$(mktemp)"; trap 'rm -f "$cons"' EXIT
    torch_base="${torch_ver%%+*}"
    if [ "$torch_base" = "2.13.0" ]; then
        cp "$ROOT/tools/constraints.txt" "$cons"
    else  # the monai pin needs a recent torch; let pip pick a matching monai
        grep -v '^monai==' "$ROOT/tools/constraints.txt" > "$cons"
    fi
    echo "torch==$torch_ver" >> "$cons"

    # ------------------------------------------------------------- mmcv
    mmcv_ok() { "$PY" -c 'import mmcv, mmcv.ops; from mmcv.ops import nms; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; }
    if mmcv_ok; then
        say "mmcv 2.1.0 with ops present"
    else
        installed_wheel=0
        if [ ${#find_links[@]} -gt 0 ]; then
            say "looking for an mmcv 2.1.0 wheel in: ${PLUGINS_FIND_LINKS}"
            if "${PIP[@]}" install --no-index --no-deps "${find_links[@]}" mmcv==2.1.0 2>/dev/null; then
                "${PIP[@]}" install -c "$cons" "${find_links[@]}" mmcv==2.1.0 >/dev/null
                if mmcv_ok; then installed_wheel=1; say "mmcv 2.1.0 installed from a wheel";
                else say "that mmcv wheel does not work with torch $torch_ver; building from source";
                     "${PIP[@]}" uninstall -y mmcv >/dev/null; fi
            fi
        fi
        if [ $installed_wheel = 0 ]; then
            say "building mmcv 2.1.0 with compiled ops from source (20-35 min on 2 cores)"
            "${PIP[@]}" install -c "$cons" mmengine==0.10.7 "numpy<2" wheel ninja psutil packaging
            # mmcv 2.1.0's setup.py needs setuptools < 70; torch wants a newer one back.
            old_st="$("$PY" -c 'import setuptools; print(setuptools.__version__)' 2>/dev/null || echo '')"
            "${PIP[@]}" install "setuptools<70" >/dev/null 2>&1
            log="$VENV/mmcv-build.log"
            set +e
            MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" install -v \
                --no-build-isolation --no-binary mmcv -c "$cons" mmcv==2.1.0 2>&1 \
                | tee "$log" | "$PY" -u "$ROOT/tools/progress_filter.py" "mmcv build" \
                    "$("$PY" -c 'import torch; print(77 if torch.version.cuda is None else "")')"
            rc=${PIPESTATUS[0]}
            set -e
            if [ -n "$old_st" ]; then "${PIP[@]}" install "setuptools==$old_st" >/dev/null 2>&1 || true; fi
            [ "$rc" = 0 ] || die "mmcv build failed; the full log is $log"
            mmcv_ok || die "mmcv built but 'import mmcv.ops' fails; see $log"
            say "mmcv 2.1.0 built from source"
        fi
    fi

    # ------------------------------------------------------------- project
    say "installing the project and its host libraries"
    "${PIP[@]}" install -c "$cons" "${find_links[@]}" -e "$ROOT[all,test,tensorboard]"

    # ------------------------------------------------------------- system libs
    if ! err="$("$PY" -c 'import open3d' 2>&1)"; then
        if grep -q 'libusb' <<<"$err"; then
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                say "installing the system library libusb-1.0-0 (needed by open3d)"
                { apt-get install -y -qq libusb-1.0-0 || { apt-get update -qq && apt-get install -y -qq libusb-1.0-0; }; } >/dev/null
            elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
                say "installing the system library libusb-1.0-0 with sudo (needed by open3d)"
                sudo -n apt-get install -y -qq libusb-1.0-0 >/dev/null
            else
                say "open3d needs the system library libusb-1.0-0, which is missing and cannot be"
                say "installed from here. Install it (Debian/Ubuntu: 'sudo apt-get install libusb-1.0-0')."
                say "Everything but the point-cloud (SLidR) parts works without it."
            fi
        else
            say "warning: 'import open3d' fails: ${err##*$'\n'}"
        fi
    fi

    "$PY" - <<'EOF' || die "the environment is incomplete (see above)"
import importlib, sys
missing = []
for name in ('torch', 'mmengine', 'mmcv.ops', 'mmdet', 'mmseg', 'monai', 'pycocotools',
             'nibabel', 'skimage', 'pytest', 'ftfy', 'regex', 'einops', 'ignite', 'plugins'):
    try:
        importlib.import_module(name)
    except Exception as err:  # report every failure, not just the first
        missing.append(f'{name}: {err}')
if missing:
    print('[env] cannot import:\n  ' + '\n  '.join(missing), file=sys.stderr)
    sys.exit(1)
EOF
    echo "$want" > "$STAMP_FILE"
    say "environment ready in $((SECONDS - t0)) s"
fi

[ $# -gt 0 ] || exit 0
cd "$ROOT"
export PATH="$VENV/bin:$PATH"
if [ "$1" = python ] || [ "$1" = python3 ]; then shift; exec "$PY" "$@"; fi
exec "$@"
