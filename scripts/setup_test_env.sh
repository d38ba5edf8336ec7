#!/usr/bin/env bash
# System pieces that some tests use, installed by the project's own set-up (called by `make test`):
#   adb, qemu-user-static  the ADB device stand-in: real adb client/server, real aarch64 code under qemu-user
#   openssh-server/client  the SSH path to Linux boards: a real sshd on loopback into the same userland
#   chromium               the report's HTML is checked in a real headless browser
#   build/device-rootfs    the stand-in phone's arm64 Debian userland (cached; rebuilt only when its recipe changes)
# Idempotent and quick when everything is there. As root (CI) a failure stops the run, because a green suite
# whose device or browser tests silently skipped would hide a broken set-up; without root it says what is missing
# and those tests skip with their reason.
set -uo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v adb >/dev/null 2>&1 || missing+=(adb)
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)

if [ "$(id -u)" -ne 0 ]; then
    [ ${#missing[@]} -eq 0 ] || echo "setup: not root, so not installing ${missing[*]}; the tests that need them skip" >&2
    echo "setup: not root, so the arm64 device userland is not built; the real-ARM device tests skip" >&2
    exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq || exit 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || exit 1
fi
bash tests/device_standin/make_rootfs.sh build/device-rootfs || exit 1
