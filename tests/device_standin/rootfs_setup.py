"""Helpers for make_rootfs.sh that are clearer in Python than in shell.

    rootfs_setup.py apt-sources ARCH        print one-line apt sources for ARCH from this machine's Debian sources
    rootfs_setup.py personalize ROOT        write the stand-in phone's /proc, /sys, /system files into ROOT
"""

from __future__ import annotations

import glob
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_profile import PIXEL_2, write_personality  # noqa: E402


def host_codename() -> str:
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.MULTILINE)
    if not match:
        raise SystemExit("rootfs_setup: /etc/os-release names no VERSION_CODENAME; is this Debian?")
    return match.group(1)


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas, current, key = [], {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def host_debian_sources() -> list[tuple[str, str, str | None]]:
    """(uri, suite, signed_by) for every enabled Debian source of this machine, deb822 and one-line alike."""
    found: list[tuple[str, str, str | None]] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in _deb822_stanzas(Path(path).read_text()):
            if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes").lower() == "no":
                continue
            for uri in stanza.get("uris", "").split():
                for suite in stanza.get("suites", "").split():
                    found.append((uri, suite, stanza.get("signed-by")))
    one_line = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]
    for path in one_line:
        if not Path(path).exists():
            continue
        for line in Path(path).read_text().splitlines():
            match = re.match(r"^\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", line)
            if not match:
                continue
            options, uri, suite = match.groups()
            signed = re.search(r"signed-by=(\S+)", options or "")
            found.append((uri, suite, signed.group(1) if signed else None))
    return found


def apt_sources(arch: str) -> str:
    """The host's own Debian mirror(s), limited to the host release and its updates/security suites.

    Third-party repositories on the host (cloud SDKs, node) are left out: they carry no arm64 userland and
    would only slow the update down or fail it."""
    codename = host_codename()
    wanted = {codename, f"{codename}-updates", f"{codename}-security"}
    lines = []
    for uri, suite, signed_by in host_debian_sources():
        if suite not in wanted:
            continue
        options = [f"arch={arch}"]
        if signed_by:
            options.append(f"signed-by={signed_by}")
        line = f"deb [{' '.join(options)}] {uri} {suite} main"
        if line not in lines:
            lines.append(line)
    if not lines:
        raise SystemExit(f"rootfs_setup: no Debian '{codename}' source in /etc/apt/sources.list*")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "apt-sources":
        sys.stdout.write(apt_sources(argv[1]))
        return 0
    if len(argv) == 2 and argv[0] == "personalize":
        write_personality(argv[1], PIXEL_2)
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
