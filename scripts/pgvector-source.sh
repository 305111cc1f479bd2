#!/usr/bin/env bash
# Unpacks pgvector's source from Debian's source package into DIR and prints its path.
#
#   scripts/pgvector-source.sh DIR
# Needs apt-get (Debian's source index is fetched into DIR; the system's apt configuration is
# left alone). Used by pgvector-portable.sh and by the PostgreSQL 15 compatibility test.
set -euo pipefail

WORK=$1
mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial" "$WORK/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  > "$WORK/sources.list"
APT=(-o "Dir::Etc::SourceList=$WORK/sources.list" -o Dir::Etc::SourceParts=/nonexistent
     -o "Dir::State::Lists=$WORK/lists" -o "Dir::Cache=$WORK/cache")
apt-get "${APT[@]}" -qq update >&2
(cd "$WORK/src" && apt-get "${APT[@]}" -qq source --download-only pgvector 2>/dev/null >&2)
tar -xzf "$WORK"/src/pgvector_*.orig.tar.gz -C "$WORK/src"
echo "$WORK"/src/pgvector-*/
