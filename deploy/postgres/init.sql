-- One database per service that keeps tables (the fetcher keeps none). Each service
-- creates and migrates its own tables at start, with its own Alembic version table.
-- docker-compose.yml runs this once, when the PostgreSQL volume is first initialised,
-- as the POSTGRES_USER (hub), who therefore owns the databases.
CREATE DATABASE registry;
CREATE DATABASE invitations;
CREATE DATABASE gateway;
