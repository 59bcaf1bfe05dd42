#!/usr/bin/env bash
# Make sure the Rust toolchain pieces the project uses are present.
# Sourced by main.sh and test.sh.
need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is missing: $2" >&2; exit 1; }; }
need cargo "install Rust (rustup) first"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
	rustup component add rustfmt clippy >&2
fi
