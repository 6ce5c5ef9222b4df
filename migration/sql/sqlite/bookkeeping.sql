-- CreateTable
CREATE TABLE IF NOT EXISTS "seaql_migrations" (
    "version" TEXT NOT NULL PRIMARY KEY,
    "applied_at" BIGINT NOT NULL
);
