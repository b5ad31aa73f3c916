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

# need_postgres: PostgreSQL's server binaries for the throwaway clusters the tests start
# themselves (crates/testbed/src/postgres.rs). The package would also create and start a system
# cluster on port 5432; that is turned off first, since nothing here uses one.
need_postgres() {
    if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'install ok installed'; then
        as_root mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" |
            as_root tee /etc/postgresql-common/createcluster.d/quotabell.conf >/dev/null
    fi
    need_apt postgresql
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

# need_desktop_build: the libraries Tauri 2 links on Linux (WebKitGTK 4.1, GTK 3, the
# appindicator tray, librsvg for icons, libxdo for menu accelerators).
need_desktop_build() {
    need_apt libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev \
        libxdo-dev libssl-dev libdbus-1-dev
}

# need_node: Node.js and npm for the window's UI (ui/). Debian 12's nodejs is 18, too old for
# Vite 8: a machine without Node 20 gets a clear message rather than a broken build.
need_node() {
    if ! command -v npm >/dev/null; then
        need_apt nodejs npm
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$major" -lt 20 ]; then
        echo "Node.js $major is too old for ui/ (Vite 8 needs 20.19 or newer): install Node 20+" >&2
        exit 1
    fi
}

# ui_build: installs ui/'s exact dependencies (package-lock.json) and builds ui/dist, which
# the Tauri shell embeds at compile time.
ui_build() {
    need_node
    if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
        (cd ui && npm ci --no-audit --no-fund)
    fi
    (cd ui && npm run build)
}
