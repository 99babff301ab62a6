#!/bin/sh
# Entrypoint of the compose `redis` service: render the ACL file, then start Redis.
#
#   entrypoint.sh COMMAND... --aclfile FILE ...
#
# Renders users.acl (next to this script) into FILE, the path given to --aclfile in the
# command: each @<USER>_SHA256@ becomes the SHA-256 of that user's password, taken from
#   REDIS_PASSWORD            user rotator   (required)
#   REDIS_FLOWER_PASSWORD     user flower    (required)
#   REDIS_EXPORTER_PASSWORD   user exporter  (optional: empty leaves the user off)
# and the comments are dropped (Redis takes none in an ACL file). FILE is readable by its
# owner only. Then the passwords are removed from the environment and the command runs in
# this process (exec), e.g. the image's `docker-entrypoint.sh redis-server ...`,
# which drops root for the redis user. With no command, it only renders.
#
# POSIX sh and busybox tools only (redis:*-alpine has no bash).
set -eu

template="${REDIS_ACL_TEMPLATE:-$(dirname "$0")/users.acl}"

fail() {
    echo "redis-acl: $*" >&2
    exit 64
}

output=""
previous=""
for argument in "$@"; do
    if [ "${previous}" = "--aclfile" ]; then
        output="${argument}"
    fi
    previous="${argument}"
done
if [ -z "${output}" ]; then
    if [ "$#" -gt 0 ]; then
        fail "the command has no --aclfile FILE: nowhere to render ${template}"
    fi
    output="${REDIS_ACL_FILE:-}"
    [ -n "${output}" ] || fail "usage: $0 COMMAND... --aclfile FILE (or REDIS_ACL_FILE=FILE $0)"
fi
[ -r "${template}" ] || fail "cannot read the template ${template}"

sha256() {
    printf '%s' "$1" | sha256sum | cut -d ' ' -f 1
}

[ -n "${REDIS_PASSWORD:-}" ] || fail "REDIS_PASSWORD is empty (password of Redis user rotator)"
[ -n "${REDIS_FLOWER_PASSWORD:-}" ] ||
    fail "REDIS_FLOWER_PASSWORD is empty (password of Redis user flower)"
rotator="s/#@ROTATOR_SHA256@/#$(sha256 "${REDIS_PASSWORD}")/"
flower="s/#@FLOWER_SHA256@/#$(sha256 "${REDIS_FLOWER_PASSWORD}")/"
if [ -n "${REDIS_EXPORTER_PASSWORD:-}" ]; then
    exporter="s/#@EXPORTER_SHA256@/#$(sha256 "${REDIS_EXPORTER_PASSWORD}")/"
else
    # No password: the user exists but cannot log in (the metrics profile is not used).
    exporter="s/ on #@EXPORTER_SHA256@/ off resetpass/"
fi

mkdir -p "$(dirname "${output}")"
umask 077
partial="${output}.partial"
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "${template}" |
    sed -e "${rotator}" -e "${flower}" -e "${exporter}" >"${partial}"
if grep -q '@[A-Z_]*_SHA256@' "${partial}"; then
    rm -f "${partial}"
    fail "${template} names a password this script does not know"
fi
mv -f "${partial}" "${output}"
# Redis runs as `redis` once the official entrypoint drops root: it must read the file.
if [ "$(id -u)" = 0 ] && id redis >/dev/null 2>&1; then
    chown redis "${output}"
fi

# redis-server needs none of them (nor redis-cli's REDISCLI_AUTH: `docker exec`, and so
# the healthcheck, gets the container's configured environment, not this process's).
unset REDIS_PASSWORD REDIS_FLOWER_PASSWORD REDIS_EXPORTER_PASSWORD REDISCLI_AUTH
if [ "$#" -eq 0 ]; then
    exit 0
fi
exec "$@"
