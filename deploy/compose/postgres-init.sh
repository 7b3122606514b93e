#!/usr/bin/env bash
# Creates one database and one login role per Guestlist service, each role
# owning its own database and unable to connect to any other.
#
# The postgres image runs this once, from /docker-entrypoint-initdb.d, when
# its data directory is empty (see docker-compose.yml). The passwords come
# from GUESTLIST_<SERVICE>_DB_PASSWORD; there is no default here: a missing
# one stops the initialisation.
set -euo pipefail

guestlist_services=(identity invitations notifications audit projections)

for service in "${guestlist_services[@]}"; do
    password_variable="GUESTLIST_${service^^}_DB_PASSWORD"
    if [[ -z "${!password_variable:-}" ]]; then
        echo "postgres-init: ${password_variable} is not set" >&2
        exit 1
    fi
done

for service in "${guestlist_services[@]}"; do
    password_variable="GUESTLIST_${service^^}_DB_PASSWORD"
    # The password reaches psql through its environment (\getenv), never its
    # command line, and is quoted by format(%L).
    GUESTLIST_DB_PASSWORD="${!password_variable}" psql \
        --no-psqlrc --set=ON_ERROR_STOP=1 \
        --username="${POSTGRES_USER:-postgres}" --dbname="${POSTGRES_DB:-postgres}" \
        --set=name="guestlist_${service}" <<'SQL'
\getenv password GUESTLIST_DB_PASSWORD
SELECT format(
    'CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L',
    :'name', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
-- The owner keeps its rights; everyone else (PUBLIC) loses CONNECT and TEMP.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SQL
    echo "postgres-init: database and role guestlist_${service} ready"
done

# The service roles have no business in the maintenance database either.
psql --no-psqlrc --set=ON_ERROR_STOP=1 \
    --username="${POSTGRES_USER:-postgres}" --dbname="${POSTGRES_DB:-postgres}" \
    --set=maintenance="${POSTGRES_DB:-postgres}" <<'SQL'
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', :'maintenance') \gexec
SQL
