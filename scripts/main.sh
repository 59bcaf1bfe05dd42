#!/usr/bin/env bash
# Set up and run the main job: build quiesce and check every shipped spec.
set -euo pipefail
cd "$(dirname "$0")/.."
QUIESCE_SETUP_BROWSER=0 . scripts/setup.sh
cargo build --release --locked -q -p quiesce
exec ./target/release/quiesce check model/specs/*.toml "$@"
