#!/bin/sh
# Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d).
# Creates every database named in NOCONTACT_DATABASES (space or comma separated), owned by
# POSTGRES_USER. The default compose setup uses ONE database, "nocontact", holding the event
# store and every service's tables (see docs/operations.md, "Databases"); list one database
# per service here, and set NOCONTACT_<SERVICE>_DATABASE_URL, to split them.
set -eu

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
done
