#!/bin/sh
# Build the agent: sh agents/build.sh OUTDIR  ->  OUTDIR/agent
set -eu
if [ $# -ne 1 ]; then
    echo "usage: sh agents/build.sh OUTDIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
# shellcheck disable=SC2086  # CFLAGS_EXTRA is meant to split into words
${CC:-cc} -std=gnu11 -O2 -Wall -Wextra -Werror -pthread ${CFLAGS_EXTRA:-} \
    -o "$1/agent" "$here"/*.c -lm
