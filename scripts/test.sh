#!/usr/bin/env bash
# Run every test: formatting, lints, the unit/integration suites, and the
# shipped specs' expectations through the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --release --locked --all-targets -q -- -D warnings
echo "== cargo test"
cargo test --release --locked --workspace 2>&1 | tee target/test.log
echo "== quiesce check model/specs/*.toml"
./target/release/quiesce check -q model/specs/*.toml
echo "== quiesce gen --check (generated/ must match the kernel spec)"
./target/release/quiesce gen --check model/specs/15-filter-module.toml
echo "== checkpatch --strict on the kernel patch series (the rendered route included)"
bash kmod/scripts/checkpatch.sh
echo "== kernel: build the patched kernel and quiesce.ko, boot under qemu, run the boot test"
bash kmod/scripts/boottest.sh
echo "== kernel mutation gate: every mutant the model condemns must be caught by a kernel check"
./target/release/quiesce mutants
