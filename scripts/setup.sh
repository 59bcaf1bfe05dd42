#!/usr/bin/env bash
# Make sure what the project uses is present. Sourced by main.sh and test.sh.
need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is missing: $2" >&2; exit 1; }; }
need cargo "install Rust (rustup) first"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
	rustup component add rustfmt clippy >&2
fi
# Debian packages: SPIN and a C compiler (the checker quiesce is measured against and
# tested for agreement with); Chromium and ChromeDriver for the Explorer's browser test.
pkgs=""
command -v spin >/dev/null 2>&1 || pkgs="$pkgs spin"
command -v cc >/dev/null 2>&1 || pkgs="$pkgs gcc libc6-dev"
if [ "${QUIESCE_SETUP_BROWSER:-1}" = 1 ] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
	pkgs="$pkgs chromium chromium-driver"
fi
# The Explorer's icons are emoji: without a colour emoji font they render as boxes.
if [ "${QUIESCE_SETUP_BROWSER:-1}" = 1 ] && [ ! -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
	pkgs="$pkgs fonts-noto-color-emoji"
fi
if [ -n "$pkgs" ]; then
	echo "setup: installing$pkgs from Debian" >&2
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq >&2
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $pkgs >&2
fi
