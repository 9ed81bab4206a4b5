#!/usr/bin/env bash
# Install, from Debian's packages, what the tests need and the machine lacks. Idempotent: installs
# nothing when everything is there. Needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
  # the real parts the tests drive; each issue that adds a real part adds its packages here
  systemd   # systemd-analyze verify/security, systemd-sysusers, systemd-tmpfiles (unit tests)
  tmux      # the status CLI's rendering as a technician sees it
  make      # make install into a staging directory
  mosquitto  # MQTT broker: tests/integration/mqtt start their own on a free loopback port
  # the PLC bridge: its firmware (AVR toolchain) and the simavr harness the tests run it in
  gcc-avr avr-libc binutils-avr simavr libsimavr-dev libsimavrparts1
  # the local page's test drives Debian's headless Chromium through Selenium (tests/integration/api)
  chromium chromium-driver
  # the remote judge's test server: llama.cpp's llama-server, built by tools/build_llama_server.sh
  cmake ninja-build g++
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
