#!/bin/sh
# Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d).
# Creates every database named in NOCONTACT_DATABASES (space or comma separated), owned by
# POSTGRES_USER. The default compose setup uses ONE database, "nocontact", holding the event
# store and every service's tables (see README.md, "Databases"); list one database per
# service here, and set NOCONTACT_<SERVICE>_DATABASE_URL, to split them.
# Also creates the role the services connect as, NOCONTACT_APP_ROLE (default nocontact_app,
# password NOCONTACT_APP_DB_PASSWORD): no superuser, no CREATEDB/CREATEROLE; `nocontact
# migrate`, run as the owner, grants it what each table needs (SELECT and INSERT only on
# the event log).
set -eu

role="${NOCONTACT_APP_ROLE:-nocontact_app}"
case "$role" in
    *[!a-z0-9_]*|"") echo "init-databases: refusing role name '$role'" >&2; exit 1 ;;
esac
role_exists=$(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -tAc \
    "SELECT 1 FROM pg_roles WHERE rolname = '$role'")
if [ "$role_exists" != "1" ]; then
    echo "init-databases: creating role $role"
    # Through stdin, not -c: psql quotes the password (:'password') only in what it reads.
    echo "CREATE ROLE \"$role\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password'" |
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
            -v password="${NOCONTACT_APP_DB_PASSWORD:?set NOCONTACT_APP_DB_PASSWORD}"
fi

databases=$(printf '%s' "${NOCONTACT_DATABASES:-nocontact}" | tr ',' ' ')
for database in $databases; do
    case "$database" in
        *[!a-z0-9_]*|"") echo "init-databases: refusing database name '$database'" >&2; exit 1 ;;
    esac
    exists=$(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$database'")
    if [ "$exists" != "1" ]; then
        echo "init-databases: creating $database"
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
            -c "CREATE DATABASE \"$database\" OWNER \"$POSTGRES_USER\""
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -c "GRANT CONNECT ON DATABASE \"$database\" TO \"$role\""
done
