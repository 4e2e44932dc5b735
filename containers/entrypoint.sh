#!/bin/sh
# Entry point of the bids-perfusion image: a writable HOME and caches whoever runs it
# (docker run --user N, Apptainer with its own HOME, --no-home or --containall), then the
# App with the arguments given. docs/hpc.md, "Container image".
set -e
writable() { [ -n "$1" ] && [ "$1" != / ] && [ -d "$1" ] && [ -w "$1" ]; }
if ! writable "${HOME:-}"; then
    HOME=$(mktemp -d "${TMPDIR:-/tmp}/bids-perfusion-home.XXXXXX")
    export HOME
fi
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-${HOME}/.cache}"
export MPLCONFIGDIR="${MPLCONFIGDIR:-${XDG_CACHE_HOME}/matplotlib}"
export DENO_DIR="${DENO_DIR:-${XDG_CACHE_HOME}/deno}"
if ! mkdir -p "${XDG_CACHE_HOME}" "${MPLCONFIGDIR}" "${DENO_DIR}" 2>/dev/null \
        || ! writable "${MPLCONFIGDIR}" || ! writable "${DENO_DIR}"; then
    XDG_CACHE_HOME=$(mktemp -d "${TMPDIR:-/tmp}/bids-perfusion-cache.XXXXXX")
    export XDG_CACHE_HOME MPLCONFIGDIR="${XDG_CACHE_HOME}/matplotlib" DENO_DIR="${XDG_CACHE_HOME}/deno"
    mkdir -p "${MPLCONFIGDIR}" "${DENO_DIR}"
fi
exec bids-perfusion "$@"
