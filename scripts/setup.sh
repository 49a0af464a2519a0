#!/usr/bin/env bash
# Idempotent set-up steps of the Makefile: setup.sh STEP... with STEP one of
# venv packages[:PKG,...] docker image[:RELEASE,...] collections get-pip. Each step does
# only what is missing and stops with one line saying what is missing when it cannot help.
# SIPEDGE_CORE (lib.sh) picks the controller leg whose venv 'venv' and 'get-pip' set up.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_PACKAGES=(docker.io debootstrap sip-tester kamailio kamailio-sqlite-modules sqlite3 shellcheck)

# --- controller Python and venv ------------------------------------------------
# venv_ok: the leg's venv exists and runs its Python version.
venv_ok() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c \
        'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, sys.argv[1].split("."))))' "$CORE_PYTHON" 2>/dev/null
}

# The router (editable) goes into the main leg's venv only: its tests, the conformance
# suite and the benchmarks run there; the 2.20 leg builds the router's wheel from source.
ensure_venv() {
    local py want stamp="$VENV/.sipedge-stamp" req="$ROOT/requirements" name="${VENV#"$ROOT"/}"
    local router="$ROOT/files/sipedge/pyproject.toml"
    [ -z "$LEG" ] || router=""
    want="$(sha "$req/pip.txt" "$LOCK" "$router")"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
        && "$VENV/bin/python" -c 'import ansible' 2>/dev/null; then
        return 0
    fi
    py="$(pick_python)" || die "missing: a Python $CORE_PYTHON interpreter for the ansible-core $CORE controller; install one (Debian 12's python3 is 3.11; pyenv install $CORE_PYTHON) or set $PYTHON_VAR=/path/to/python$CORE_PYTHON"
    if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
        ensure_packages python3-venv
    fi
    if ! venv_ok; then
        say "creating $name with $py"
        rm -rf "$VENV"
        logged "venv$LEG" "$py" -m venv "$VENV"
    fi
    say "installing the pinned controller toolchain into $name (${LOCK#"$ROOT"/})"
    logged "venv$LEG-pip" "$VENV/bin/python" -m pip install -r "$req/pip.txt"
    logged "venv$LEG-install" "$VENV/bin/python" -m pip install -r "$LOCK"
    if [ -n "$router" ] && [ -f "$router" ]; then
        say "installing the router (pip install -e files/sipedge)"
        logged venv-router "$VENV/bin/python" -m pip install -e "$ROOT/files/sipedge"
    fi
    echo "$want" >"$stamp"
}

# --- Debian packages -----------------------------------------------------------
ensure_packages() {
    local p missing=() sudo=()
    [ $# -gt 0 ] || set -- "${ALL_PACKAGES[@]}"
    have dpkg-query || die "missing: Debian package tools (dpkg-query); this set-up needs a Debian 12 machine with the packages: $*"
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    have apt-get || die "missing packages: ${missing[*]}; no apt-get here: install them with this machine's package manager"
    if [ "$(id -u)" -ne 0 ]; then
        have sudo || die "missing packages: ${missing[*]}; run as root (or with sudo) to let 'make' install them, or run: apt-get install ${missing[*]}"
        sudo=(sudo -n)
    fi
    say "installing Debian packages: ${missing[*]}"
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } >"$LOGS/apt.log" 2>&1; then
        die "missing packages: ${missing[*]}; apt-get could not install them (log: ${LOGS#"$ROOT"/}/apt.log): check the apt sources, or install them yourself"
    fi
}

# --- Docker engine -------------------------------------------------------------
last_line() { echo "last log line: $(tail -n 1 "$1" 2>/dev/null | cut -c1-160)"; }

docker_ok() { have docker && timeout 20 docker info >/dev/null 2>&1; }

ensure_docker() {
    local waited=0 limit="${SIPEDGE_DOCKER_WAIT:-60}" log="$BUILD/dockerd.log" pid
    docker_ok && return 0
    [ -z "${DOCKER_HOST:-}" ] || die "missing: the Docker engine at DOCKER_HOST=$DOCKER_HOST does not answer 'docker info'; start it or unset DOCKER_HOST"
    if ! have dockerd || ! have docker; then ensure_packages docker.io; fi
    if ! pgrep -x dockerd >/dev/null; then
        [ "$(id -u)" -eq 0 ] || die "missing: a running Docker engine; start it (e.g. 'sudo systemctl start docker') or run 'make docker' as root"
        say "starting dockerd in the background (log: ${log#"$ROOT"/})"
        nohup dockerd >"$log" 2>&1 </dev/null &
        pid=$!
    fi
    until docker_ok; do
        if [ -n "${pid:-}" ] && ! kill -0 "$pid" 2>/dev/null; then
            die "missing: a working Docker engine; dockerd exited at start ($(last_line "$log")); see ${log#"$ROOT"/}, or start Docker yourself"
        fi
        if [ "$waited" -ge "$limit" ]; then
            if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; fi
            die "missing: a working Docker engine; dockerd did not answer within ${limit} s ($(last_line "$log")); see ${log#"$ROOT"/}, or start Docker yourself"
        fi
        sleep 2; waited=$((waited + 2))
    done
    # Remember the engine this set-up started, so that 'make docker-stop' ends only that one.
    if [ -n "${pid:-}" ]; then echo "$pid" >"$BUILD/dockerd.pid"; fi
    say "Docker engine is up"
}

# --- Debian systemd base images for Molecule -----------------------------------
# One per release in RELEASES (lib.sh): bookworm (Debian 12) and trixie (Debian 13).
IMAGE_PACKAGES="python3,python3-apt,python3-venv,systemd,systemd-sysv,iproute2,procps,sudo,ca-certificates,sqlite3,sip-tester"

debian_mirror() {
    local m=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        m="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
    elif [ -f /etc/apt/sources.list ]; then
        m="$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)"
    fi
    echo "${SIPEDGE_DEBIAN_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

# image_name RELEASE: the image Molecule uses for that release (its setting in lib.sh).
image_name() {
    case "$1" in
        bookworm) echo "$SIPEDGE_MOLECULE_IMAGE" ;;
        trixie) echo "$SIPEDGE_MOLECULE_IMAGE_TRIXIE" ;;
        *) die "unknown Debian release '$1' (the images are: ${RELEASES[*]})" ;;
    esac
}

# ensure_image RELEASE: the release's image, built with debootstrap when missing.
ensure_image() {
    local release="$1" image recipe label rootfs="$BUILD/image-rootfs-$1" mirror setting
    image="$(image_name "$release")"
    setting=SIPEDGE_MOLECULE_IMAGE
    [ "$release" = bookworm ] || setting="SIPEDGE_MOLECULE_IMAGE_${release^^}"
    recipe="$(echo "$release $IMAGE_PACKAGES 1" | sha256sum | cut -c1-16)"
    ensure_docker
    if label="$(docker image inspect -f '{{ index .Config.Labels "org.sipedge.base-recipe" }}' "$image" 2>/dev/null)"; then
        # A foreign image (no label) is used as it is; ours is rebuilt when its recipe changed.
        case "$label" in "" | "<no value>" | "$recipe") return 0 ;; esac
        say "image $image was built from an older recipe: rebuilding"
    fi
    [ "$(id -u)" -eq 0 ] || die "missing: image $image; building it needs root (debootstrap), or point $setting at a Debian $release systemd image you have"
    ensure_packages debootstrap
    [ -e "/usr/share/debootstrap/scripts/$release" ] || die "missing: debootstrap does not know Debian $release; upgrade debootstrap, or point $setting at a Debian $release systemd image you have"
    mirror="$(debian_mirror)"
    say "building image $image with debootstrap from $mirror (about 1 minute)"
    rm -rf "$rootfs"
    logged "debootstrap-$release" debootstrap --variant=minbase --include="$IMAGE_PACKAGES" "$release" "$rootfs" "$mirror"
    # No consoles in a container; clean apt's caches to keep the image small.
    ln -sf /dev/null "$rootfs/etc/systemd/system/getty@tty1.service"
    ln -sf /dev/null "$rootfs/etc/systemd/system/console-getty.service"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_Packages
    tar -C "$rootfs" -c . | logged "docker-import-$release" docker import \
        -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' \
        -c "LABEL org.sipedge.base-recipe=$recipe" - "$image"
    rm -rf "$rootfs"
    say "image $image built"
}

# --- collections -----------------------------------------------------------------
ensure_collections() {
    local stamp="$COLLECTIONS/.stamp" want req="$ROOT/requirements"
    ensure_venv
    want="$(sha "$req/collections.yml" "$req/ansible-bundle.txt")"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        rm -rf "$COLLECTIONS/ansible_collections"
        mkdir -p "$COLLECTIONS"
        if [ "${SIPEDGE_GALAXY:-1}" != 0 ] && timeout 90 ansible-galaxy collection install --timeout 15 \
            -r "$req/collections.yml" -p "$COLLECTIONS" >"$LOGS/galaxy.log" 2>&1; then
            say "collections installed from Galaxy"
        else
            say "Galaxy did not answer: taking the collections from the 'ansible' wheel on PyPI"
            logged bundle-download python -m pip download --no-deps --require-hashes \
                -r "$req/ansible-bundle.txt" -d "$BUILD/downloads"
            logged bundle-unpack python "$ROOT/scripts/unpack_collections.py" \
                "$req/collections.yml" "$BUILD/downloads" "$COLLECTIONS"
        fi
        echo "$want" >"$stamp"
    fi
    place_collection
}

# Copy (never symlink: ansible-test and Molecule refuse it) the collection's
# files, as git sees them, to .../ansible_collections/voip/sip_edge.
place_collection() {
    lock_placed
    rm -rf "$PLACED"
    mkdir -p "$PLACED"
    if [ "$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null)" = "$ROOT" ]; then
        (cd "$ROOT" && git ls-files -z -co --exclude-standard \
            | while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done \
            | tar --null -T - -cf -) | tar -C "$PLACED" -xf -
    else
        tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./.venv-2.20 --exclude=./.cache --exclude=./.ansible \
            --exclude=./tests/output --exclude=__pycache__ --exclude='*.egg-info' -cf - . | tar -C "$PLACED" -xf -
    fi
    # An own (empty) git repository: ansible-test lists a collection's files with
    # git, and would otherwise use the repository above, which ignores .cache/.
    if have git; then git -c init.defaultBranch=main init -q "$PLACED"; fi
}

# --- ansible-test's pip bootstrap --------------------------------------------------
# ansible-test fetches a get-pip script from a host outside the registries. Try it
# once; when it cannot be had, seed its cache with scripts/get_pip_remedy.py.
ensure_get_pip() {
    local ver cache url
    ensure_venv
    ver="$(python -c 'import re, inspect; from ansible_test._internal import python_requirements as m; print(re.search(r"pip=.([0-9.]+).", inspect.getsource(m.get_venv_packages)).group(1))')"
    cache="$HOME/.ansible/test/cache/get_pip_${ver//./_}.py"
    [ -s "$cache" ] && return 0
    mkdir -p "${cache%/*}"
    url="https://ci-files.testing.ansible.com/ansible-test/get-pip-$ver.py"
    if [ "${SIPEDGE_GET_PIP_DOWNLOAD:-1}" != 0 ] \
        && timeout 30 python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
            "$url" "$cache.download" >/dev/null 2>&1; then
        mv "$cache.download" "$cache"
        return 0
    fi
    rm -f "$cache.download"
    say "the pip $ver bootstrap script could not be downloaded: using the ensurepip remedy"
    cp "$ROOT/scripts/get_pip_remedy.py" "$cache"
}

[ $# -gt 0 ] || die "usage: scripts/setup.sh venv|packages[:PKG,...]|docker|image[:RELEASE,...]|collections|get-pip ..."
for step in "$@"; do
    case "$step" in
        venv | packages | docker | collections) "ensure_$step" ;;
        get-pip) ensure_get_pip ;;
        packages:*) IFS=, read -r -a pkgs <<<"${step#packages:}"; ensure_packages "${pkgs[@]}" ;;
        # 'image' alone is the Debian 12 image (the demo's); 'image:all' every release's.
        image) ensure_image bookworm ;;
        image:all) for release in "${RELEASES[@]}"; do ensure_image "$release"; done ;;
        image:*)
            IFS=, read -r -a releases <<<"${step#image:}"
            for release in "${releases[@]}"; do ensure_image "$release"; done
            ;;
        *) die "unknown set-up step '$step'" ;;
    esac
done
