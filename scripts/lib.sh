# Shared by scripts/run and scripts/test: install what is missing, nothing else.
# Sourced, not executed.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# need_apt PKG...: installs the Debian/Ubuntu packages that are not installed yet.
apt_updated=""
need_apt() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    if [ -z "$apt_updated" ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# need_rust: a Rust toolchain new enough for the workspace (rust-version in Cargo.toml), with
# rustfmt and clippy.
need_rust() {
    [ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v cargo >/dev/null; then
        need_apt rustup || true
        command -v rustup >/dev/null && rustup default stable
    fi
    command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.95 or newer (https://rustup.rs)" >&2; exit 1; }
    if command -v rustup >/dev/null; then
        for c in rustfmt clippy; do
            rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
        done
    fi
}

need_build_tools() {
    need_apt build-essential pkg-config ca-certificates
}
