-- CreateTable
CREATE TABLE "OpsDoctorRun" (
    "id" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt" TIMESTAMP(3) NOT NULL,
    "trigger" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "durationMs" INTEGER NOT NULL,
    "resultsJson" JSONB NOT NULL,

    CONSTRAINT "OpsDoctorRun_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "OpsDoctorRun_createdAt_idx" ON "OpsDoctorRun"("createdAt");
