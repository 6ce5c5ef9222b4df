-- CreateTable
CREATE TABLE "OpsDeploy" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "environment" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "gitSha" TEXT,
    "strategy" TEXT,
    "startedBy" TEXT,
    "externalIdsJson" JSONB NOT NULL,
    "status" TEXT NOT NULL,
    "finishedAt" DATETIME,
    "reason" TEXT,
    "reportJson" JSONB,
    "incidentId" TEXT
);

-- CreateTable
CREATE TABLE "OpsGateEvaluation" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "environment" TEXT NOT NULL,
    "release" TEXT NOT NULL,
    "verdict" TEXT NOT NULL,
    "summary" TEXT NOT NULL,
    "source" TEXT NOT NULL,
    "checksJson" JSONB NOT NULL,
    "deployId" TEXT,
    CONSTRAINT "OpsGateEvaluation_deployId_fkey" FOREIGN KEY ("deployId") REFERENCES "OpsDeploy" ("id") ON DELETE SET NULL ON UPDATE CASCADE
);

-- CreateIndex
CREATE INDEX "OpsDeploy_environment_createdAt_idx" ON "OpsDeploy"("environment", "createdAt");

-- CreateIndex
CREATE INDEX "OpsGateEvaluation_environment_release_createdAt_idx" ON "OpsGateEvaluation"("environment", "release", "createdAt");

-- CreateIndex
CREATE INDEX "OpsGateEvaluation_deployId_idx" ON "OpsGateEvaluation"("deployId");
