#!/usr/bin/env bash
# Installs what the lineage tests use beyond the Python environment:
#   - MariaDB server (Debian's mariadb-server): the tests start a throwaway server on
#     127.0.0.1 in a temporary directory to check MLMD over MySQL (tests/lineage);
#   - Graphviz (`dot`): the tests check `lineage export --format dot` with the real parser.
# Idempotent and quick when both are present: it only looks for the binaries then.
# Without root, or off Debian/Ubuntu, it prints what to install and exits 0; the MySQL
# tests then skip with that reason and the DOT check falls back to a strict parser.
set -euo pipefail

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]
}

missing=()
if ! have mariadbd && ! have mysqld; then
    missing+=(mariadb-server)
fi
if ! have mariadb-install-db && ! have mysql_install_db; then
    [[ " ${missing[*]} " == *" mariadb-server "* ]] || missing+=(mariadb-server)
fi
if ! have dot; then
    missing+=(graphviz)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "test services: mariadb-server and graphviz already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "test services: please install ${missing[*]} (no apt-get here); the MySQL" \
        "tests skip and DOT is checked by a fallback parser until then" >&2
    exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo_cmd=(sudo -n)
    else
        echo "test services: run as root (or with sudo) to install ${missing[*]};" \
            "the MySQL tests skip until then" >&2
        exit 0
    fi
fi

echo "test services: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
# No recommends: the server binaries are enough; no service is enabled or started here
# (the tests run their own server as the current user in a temporary directory).
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "test services: installed ${missing[*]}"
