-- Runs once, when the postgres service starts on an empty data volume, as POSTGRES_USER in the
-- database POSTGRES_DB (prefect). Prefect's migrations use pg_trgm for its text search indexes;
-- MLflow gets a database of its own.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE DATABASE mlflow;
