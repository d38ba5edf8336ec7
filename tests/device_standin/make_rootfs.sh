#!/usr/bin/env bash
# Build (or reuse) the stand-in phone's userland: an arm64 Debian (the host's release, bookworm: python3.11)
# extracted from Debian's own arm64 .debs, plus aarch64 wheels of ai-edge-litert and numpy, plus the files that
# make it look like a phone from inside (see device_profile.py). Commands run in it with `chroot` and execute real
# aarch64 code under qemu-user, registered with binfmt_misc here.
#
# usage: make_rootfs.sh [DEST]     (default: <project>/build/device-rootfs, git-ignored)
#   DEST/rootfs   the userland (what the stand-in device chroots into)
#   DEST/apt      private apt state and .deb cache (this machine's own apt state is never touched)
#   DEST/wheels   the aarch64 wheels, as downloaded
#
# Idempotent: a rootfs built from the same package set is reused (only binfmt_misc registration and the device
# files are redone, both cheap). Needs root: binfmt_misc, chroot and device nodes all do. Needs the Debian
# packages qemu-user-static (the emulator and its binfmt definition) and network access to the Debian mirror this
# machine's apt uses and to PyPI.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project=$(cd "$here/../.." && pwd)
dest=$(realpath -m "${1:-$project/build/device-rootfs}")
rootfs=$dest/rootfs

# What goes into the userland. libc-bin brings ldconfig; coreutils/grep/sed/findutils are what scripts pushed to a
# phone expect of its shell; python3 is the interpreter the benchmark_model stand-in runs on.
DEB_PACKAGES=(libc6 libc-bin libgcc-s1 libstdc++6 dash bash coreutils grep sed findutils gzip python3 python3.11)
WHEELS=(ai-edge-litert==2.3.0 numpy==2.4.6)
# Bookworm's glibc is 2.36; these are the tags the pinned wheels are published with (checked with `pip download`).
WHEEL_PLATFORMS=(manylinux_2_27_aarch64 manylinux_2_28_aarch64 manylinux_2_17_aarch64 manylinux2014_aarch64)
# The emulated CPU: an Armv8.0-A core with crypto and CRC, the ISA of the profile's Kryo 280 (Cortex-A73 class).
# qemu's default "max" CPU would offer SVE/SME, which no phone of that class has, and XNNPACK would pick
# kernels for them.
QEMU_CPU_MODEL=cortex-a72

log() { printf 'make_rootfs: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (binfmt_misc registration, chroot and mknod need it)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (this script expects a Debian host)"

if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
elif [ -x "$project/.venv/bin/python" ]; then
    python=$project/.venv/bin/python
else
    python=python3
fi
"$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip (set PYTHON to a Python with pip)"

register_qemu_binfmt() {
    # The F (fix-binary) flag makes the kernel open the interpreter once, at registration, from the host's file
    # system. Without it the kernel would look for /usr/libexec/qemu-binfmt/aarch64-binfmt-P inside the chroot,
    # and we would have to copy a 13 MB x86 binary into a userland that should hold only aarch64 code.
    # Debian's own definition (qemu-user-static's binfmt.d file) already carries the flags "OPF".
    local conf=/usr/lib/binfmt.d/qemu-aarch64.conf entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
    [ -x /usr/bin/qemu-aarch64-static ] && [ -f "$conf" ] \
        || die "qemu-aarch64-static is missing: apt-get install -y qemu-user-static"
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "cannot mount binfmt_misc at /proc/sys/fs/binfmt_misc (not allowed in this container?)"
    fi
    if [ -e "$entry" ]; then
        if grep -q '^enabled' "$entry" && grep -q '^flags: .*F' "$entry"; then
            return 0
        fi
        log "replacing the qemu-aarch64 binfmt entry (disabled or registered without the F flag)"
        echo -1 > "$entry"
    fi
    cat "$conf" > /proc/sys/fs/binfmt_misc/register
    grep -q '^enabled' "$entry" || die "binfmt_misc did not accept the qemu-aarch64 entry"
}

run_in() {  # run_in ROOT CMD...: run an aarch64 command inside a userland, with a clean environment
    local root=$1; shift
    chroot "$root" /usr/bin/env -i PATH=/system/bin:/usr/local/bin:/usr/bin:/bin HOME=/ \
        QEMU_CPU=$QEMU_CPU_MODEL "$@"
}

smoke_test() {  # the userland runs aarch64 code, and LiteRT imports and sees an ARM CPU
    local root=$1 machine
    machine=$(run_in "$root" python3 -c \
        'import platform, numpy, ai_edge_litert.interpreter; print(platform.machine())') \
        || die "python3 with ai_edge_litert does not run in $root"
    [ "$machine" = aarch64 ] || die "expected python3 in $root to report aarch64, got '$machine'"
}

register_qemu_binfmt

build_key=$(
    {
        cat "${BASH_SOURCE[0]}" "$here/rootfs_setup.py"
        "$python" "$here/rootfs_setup.py" apt-sources arm64
    } | sha256sum | cut -d' ' -f1
)

if [ -f "$rootfs/.standin-build-key" ] && [ "$(cat "$rootfs/.standin-build-key")" = "$build_key" ]; then
    "$python" "$here/rootfs_setup.py" personalize "$rootfs"
    [ "$(run_in "$rootfs" uname -m)" = aarch64 ] || die "cached userland $rootfs does not run as aarch64"
    log "cached userland is up to date: $rootfs"
    exit 0
fi

started=$SECONDS
mkdir -p "$dest"
build=$dest/rootfs.partial
rm -rf "$build"

# --- 1. Debian arm64 packages, resolved and downloaded by apt with a private configuration -------------------
apt_dir=$dest/apt
mkdir -p "$apt_dir"/{etc/apt.conf.d,etc/preferences.d,etc/sources.list.d,etc/trusted.gpg.d} \
         "$apt_dir"/state/lists/partial "$apt_dir"/cache/archives/partial "$apt_dir"/log
# An empty dpkg status: apt then resolves the whole dependency closure of DEB_PACKAGES for arm64, and nothing of
# the host's installed (amd64) packages leaks into the answer.
: > "$apt_dir/state/status"
"$python" "$here/rootfs_setup.py" apt-sources arm64 > "$apt_dir/etc/sources.list"
{
    echo "Dir::State \"$apt_dir/state\";"
    echo "Dir::State::status \"$apt_dir/state/status\";"
    echo "Dir::Cache \"$apt_dir/cache\";"
    echo "Dir::Etc \"$apt_dir/etc\";"
    echo "Dir::Etc::sourcelist \"$apt_dir/etc/sources.list\";"
    echo "Dir::Etc::sourceparts \"$apt_dir/etc/sources.list.d\";"
    echo "Dir::Etc::parts \"$apt_dir/etc/apt.conf.d\";"
    echo "Dir::Etc::preferencesparts \"$apt_dir/etc/preferences.d\";"
    echo "Dir::Etc::trustedparts \"/etc/apt/trusted.gpg.d\";"
    echo "Dir::Log \"$apt_dir/log\";"
    echo "APT::Architecture \"arm64\";"
    echo "APT::Architectures { \"arm64\"; };"
    echo "APT::Install-Recommends \"false\";"
    echo "APT::Install-Suggests \"false\";"
    echo "Acquire::Languages \"none\";"
    echo "Debug::NoLocking \"true\";"
    # Keep how this machine reaches its mirror (proxies, date checks of a snapshot mirror, index targets).
    apt-config dump | grep '^Acquire::' || true
} > "$apt_dir/apt.conf"
export APT_CONFIG=$apt_dir/apt.conf

log "resolving and downloading arm64 packages: ${DEB_PACKAGES[*]}"
apt-get -q -o APT::Update::Error-Mode=any update >"$apt_dir/log/update.log" 2>&1 \
    || { cat "$apt_dir/log/update.log" >&2; die "apt-get update (arm64, private state) failed"; }
apt-get -q -y --download-only install "${DEB_PACKAGES[@]}" >"$apt_dir/log/download.log" 2>&1 \
    || { cat "$apt_dir/log/download.log" >&2; die "downloading the arm64 packages failed"; }

# The exact .debs of this resolution (the cache may also hold older versions from earlier builds).
mapfile -t resolved < <(apt-get -s install "${DEB_PACKAGES[@]}" 2>/dev/null \
    | awk '$1 == "Inst" { gsub(/[()]/, "", $3); print $2 " " $3 }')
[ "${#resolved[@]}" -gt 0 ] || die "apt resolved no packages (see $apt_dir/log)"
debs=()
for name_version in "${resolved[@]}"; do
    name=${name_version% *}; version=${name_version#* }
    matches=("$apt_dir/cache/archives/${name}_${version//:/%3a}_"*.deb)
    [ -f "${matches[0]}" ] || die "apt resolved $name $version but its .deb is not in $apt_dir/cache/archives"
    debs+=("${matches[0]}")
done

# --- 2. Unpack into a merged-/usr tree, as Debian bookworm installs are laid out ------------------------------
mkdir -p "$build"/usr/{bin,sbin,lib}
ln -s usr/bin "$build/bin"
ln -s usr/sbin "$build/sbin"
ln -s usr/lib "$build/lib"
for deb in "${debs[@]}"; do
    # No maintainer scripts run (they are aarch64 and expect a booted system); the few things they would do
    # that matter here are done below. --keep-directory-symlink keeps /bin, /lib and /sbin pointing into /usr.
    dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$build"
done
log "unpacked ${#debs[@]} arm64 packages"

[ -e "$build/bin/sh" ] || ln -s dash "$build/bin/sh"
[ -e "$build/usr/bin/python3" ] || ln -s python3.11 "$build/usr/bin/python3"
mkdir -p "$build"/{etc,root,dev,tmp,data/local/tmp,sdcard,standin}
chmod 1777 "$build/tmp"
chmod 0771 "$build/data/local/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nshell:x:2000:2000:shell:/data/local/tmp:/bin/sh\n' > "$build/etc/passwd"
printf 'root:x:0:\nshell:x:2000:\n' > "$build/etc/group"
# /dev is not mounted inside the chroot, so programs get the handful of nodes they open from plain device files.
mknod -m 666 "$build/dev/null" c 1 3
mknod -m 666 "$build/dev/zero" c 1 5
mknod -m 666 "$build/dev/full" c 1 7
mknod -m 666 "$build/dev/random" c 1 8
mknod -m 666 "$build/dev/urandom" c 1 9
mknod -m 666 "$build/dev/tty" c 5 0
run_in "$build" /sbin/ldconfig || die "ldconfig (aarch64, under qemu) failed: is binfmt_misc working?"

# --- 3. aarch64 wheels, installed by the host's pip for the userland's interpreter ---------------------------
# Downloaded into DEST/wheels first (kept across rebuilds), then installed from there without an index.
site=$build/usr/local/lib/python3.11/dist-packages
wheel_args=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311)
for tag in "${WHEEL_PLATFORMS[@]}"; do wheel_args+=(--platform "$tag"); done
log "installing aarch64 wheels: ${WHEELS[*]}"
"$python" -m pip download --quiet --disable-pip-version-check "${wheel_args[@]}" -d "$dest/wheels" "${WHEELS[@]}" \
    || die "pip could not download aarch64 wheels of ${WHEELS[*]}"
"$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location --no-index \
    --find-links "$dest/wheels" --target "$site" "${wheel_args[@]}" "${WHEELS[@]}" \
    || die "pip could not install the aarch64 wheels from $dest/wheels"
# Console scripts pip wrote point at the host's interpreter; they would only mislead inside the userland.
rm -rf "$site/bin"

# --- 4. What makes it a phone from inside, then check it really runs ----------------------------------------
"$python" "$here/rootfs_setup.py" personalize "$build"
smoke_test "$build"

echo "$build_key" > "$build/.standin-build-key"
rm -rf "$rootfs.old"
[ -d "$rootfs" ] && mv "$rootfs" "$rootfs.old"
mv "$build" "$rootfs"
rm -rf "$rootfs.old"
log "built $rootfs in $((SECONDS - started)) s ($(du -sm "$rootfs" | cut -f1) MB)"
