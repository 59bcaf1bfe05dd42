#!/usr/bin/env bash
# Run the kernel's checkpatch.pl --strict on every patch of the series (the
# rendered route included). Fails on any error, check or warning except the one
# a new file always draws ("does MAINTAINERS need updating?": the BLOCK LAYER
# entry covers block/ and include/linux/blk*).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
TC=$(bash "$here/scripts/toolchain.sh")
KDIR=$(bash "$here/scripts/kernel.sh")
mkdir -p "$TC/tmp/checkpatch"
bad=0
for p in "$here"/patches/*.patch; do
	cp "$p" "$TC/tmp/checkpatch/"
	out=$(chroot "$TC" sh -c "cd $KDIR && perl scripts/checkpatch.pl --no-tree --strict --terse /tmp/checkpatch/$(basename "$p")" || true)
	issues=$(printf '%s\n' "$out" | grep -E ': (ERROR|WARNING|CHECK):' | grep -v 'does MAINTAINERS need updating' || true)
	if [ -n "$issues" ]; then
		printf 'checkpatch: %s:\n%s\n' "$(basename "$p")" "$issues"
		bad=1
	else
		printf 'checkpatch: %s: clean\n' "$(basename "$p")"
	fi
done
rm -rf "$TC/tmp/checkpatch"
exit "$bad"
