-- CreateTable
CREATE TABLE "OpsDoctorRun" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt" DATETIME NOT NULL,
    "trigger" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "durationMs" INTEGER NOT NULL,
    "resultsJson" JSONB NOT NULL
);

-- CreateIndex
CREATE INDEX "OpsDoctorRun_createdAt_idx" ON "OpsDoctorRun"("createdAt");
