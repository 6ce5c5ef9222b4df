-- CreateTable
CREATE TABLE IF NOT EXISTS "seaql_migrations" (
    "version" TEXT NOT NULL,
    "applied_at" BIGINT NOT NULL,

    CONSTRAINT "seaql_migrations_pkey" PRIMARY KEY ("version")
);
