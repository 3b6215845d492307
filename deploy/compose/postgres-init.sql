-- One PostgreSQL server, one database per service (docker-entrypoint-initdb.d runs this once, on
-- an empty data volume, as POSTGRES_USER). Services also create their database when it is
-- missing (`docuchat migrate`), so this only makes the layout explicit and lets the databases
-- exist before anything connects. Production: a role per service owning only its database.
CREATE DATABASE docuchat_auth;
CREATE DATABASE docuchat_ingest;
CREATE DATABASE docuchat_chat;
CREATE DATABASE docuchat_usage;
