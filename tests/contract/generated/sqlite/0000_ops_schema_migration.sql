-- CreateTable
CREATE TABLE "seaql_migrations" (
    "version" TEXT NOT NULL PRIMARY KEY,
    "applied_at" BIGINT NOT NULL
);
