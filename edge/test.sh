#!/usr/bin/env bash
# Runs the Edge Function tests (offline: handlers are tested with stubbed RPCs) with a pinned
# Deno, installed from the npm registry into edge/node_modules (gitignored) when missing, after
# type-checking the frontend's typed queries (_frontend) against supabase/types/database.ts.
# Usage: edge/test.sh [deno test args...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="${DENO_VERSION:-2.9.6}"
deno="$here/node_modules/.bin/deno"

if [[ ! -x "$deno" ]] || ! "$deno" --version 2>/dev/null | head -n1 | grep -qx "deno $version.*"; then
  echo "installing deno $version from npm into $here/node_modules" >&2
  npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$here" "deno@$version" >&2
fi

cd "$here"
NO_COLOR=1 "$deno" check _frontend/
NO_COLOR=1 exec "$deno" test "$@"
