#!/usr/bin/env bash
# Installs the Debian packages sandlot needs on the host. Run as root; safe to run again.
#   debootstrap, debian-archive-keyring  build the `base` template
#   sudo                                 the `host` template binds the host's /usr, and the runtime
#                                        mounts its sudo shim over /usr/bin/sudo, which must exist
#   python3-venv                         ./dev makes its virtualenvs with `python3 -m venv`
#   iproute2                             `ip`, to look into a sandbox's network namespace from the host
#                                        (nsenter --net=/proc/PID/ns/net ip addr)
#   fuse3                                the permission filesystem that serves workspaces (codebases
#                                        with path permissions) is a FUSE daemon: fusermount3, fuse.conf
#   libfuse3-dev, pkg-config             build the pyfuse3 wheel (no binary wheel on PyPI)
#   nftables                             sandbox egress: the firewall rules of sandboxes with a network
#                                        (the runtime loads them through its libnftables)
#   libnss-myhostname                    `*.localhost` names (the port proxy's `3000-<id>.localhost`)
#                                        resolve to loopback; enabled below in /etc/nsswitch.conf
#   e2fsprogs                            mkfs.ext4: each volume is an ext4 image (its size its quota)
# Keep README.md's list of system packages the same as this one.
#
# --peers (opt-in; the test suite does not need them): also the peers benchmarks/peers.py measures
#   docker.io                            Docker (a private dockerd the benchmark starts and stops)
#   runsc                                gVisor, as a runtime of that dockerd
set -euo pipefail

packages=(debootstrap debian-archive-keyring sudo python3-venv iproute2 fuse3 libfuse3-dev pkg-config nftables libnss-myhostname e2fsprogs)
if [ "${1:-}" = "--peers" ]; then
    packages+=(docker.io runsc)
fi

# glibc resolves `*.localhost` only through nss-myhostname: add it to the hosts line, after `files`
# (so /etc/hosts still wins) and before `dns`; a hosts line that names it already is left alone.
enable_myhostname() {
    if [ -f /etc/nsswitch.conf ] && ! grep -qE '^hosts:.*\bmyhostname\b' /etc/nsswitch.conf; then
        if [ "$(id -u)" -eq 0 ]; then
            sed -i -E '/^hosts:/ s/\bfiles\b/files myhostname/' /etc/nsswitch.conf
        else
            echo "add myhostname to the hosts line of /etc/nsswitch.conf for *.localhost names" >&2
        fi
    fi
}

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    enable_myhostname
    echo "system dependencies already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root to install: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when there are none, or when they are too old to install from.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    apt-get update
fi
apt-get install -y "${missing[@]}" || { apt-get update && apt-get install -y "${missing[@]}"; }
enable_myhostname
