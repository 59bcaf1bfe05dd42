#!/usr/bin/env bash
# Make sure what the project uses is present. Sourced by main.sh and test.sh.
need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is missing: $2" >&2; exit 1; }; }
need cargo "install Rust (rustup) first"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
	rustup component add rustfmt clippy >&2
fi
# The Explorer's browser test drives Debian's Chromium through ChromeDriver.
if [ "${QUIESCE_SETUP_BROWSER:-1}" = 1 ] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
	echo "setup: installing chromium and chromium-driver from Debian" >&2
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
fi
