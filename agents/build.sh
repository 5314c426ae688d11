#!/bin/sh
# Build the agent: sh agents/build.sh OUTDIR [SOURCE_HASH]  ->  OUTDIR/agent
# SOURCE_HASH (hex) is embedded, and `agent --version` prints it, so a deployed binary can be
# matched to the sources it came from. STATIC=1 links statically (to run on a host without a
# compiler or the same libc); CC and CFLAGS_EXTRA are honoured.
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: sh agents/build.sh OUTDIR [SOURCE_HASH]" >&2
    exit 2
fi
source_hash=${2:-unknown}
case $source_hash in
    unknown) ;;
    *[!0-9a-f]*|'') echo "build.sh: SOURCE_HASH must be lowercase hex" >&2; exit 2 ;;
esac
static=
if [ "${STATIC:-0}" = 1 ]; then
    static=-static
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
# _GNU_SOURCE (CPU affinity, accept4) is set here, for every file alike: a feature macro works
# only before the first system header, so no header's place in the include order matters.
# shellcheck disable=SC2086  # CFLAGS_EXTRA is meant to split into words
${CC:-cc} -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pthread $static ${CFLAGS_EXTRA:-} \
    -DAGENT_SOURCE_HASH="\"$source_hash\"" -o "$1/agent" "$here"/*.c -lm
