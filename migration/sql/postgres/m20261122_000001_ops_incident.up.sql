-- CreateEnum
CREATE TYPE "OpsIncidentSeverity" AS ENUM ('INFO', 'WARN', 'CRITICAL');

-- CreateEnum
CREATE TYPE "OpsIncidentCategory" AS ENUM ('DB', 'TUNNEL', 'API', 'DEPLOY', 'OTHER');

-- CreateEnum
CREATE TYPE "OpsIncidentEventType" AS ENUM ('DETECTED', 'RECOVERY_ATTEMPTED', 'RECOVERY_SUCCESS', 'RECOVERY_FAILED', 'ESCALATED', 'RESOLVED');

-- CreateTable
CREATE TABLE "OpsIncident" (
    "id" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "severity" "OpsIncidentSeverity" NOT NULL,
    "category" "OpsIncidentCategory" NOT NULL,
    "summary" TEXT NOT NULL,
    "detailsJson" JSONB NOT NULL,
    "resolvedAt" TIMESTAMP(3),
    "resolutionNotes" TEXT,

    CONSTRAINT "OpsIncident_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "OpsIncidentEvent" (
    "id" TEXT NOT NULL,
    "incidentId" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "eventType" "OpsIncidentEventType" NOT NULL,
    "message" TEXT NOT NULL,
    "metadataJson" JSONB NOT NULL,

    CONSTRAINT "OpsIncidentEvent_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "OpsIncident_createdAt_idx" ON "OpsIncident"("createdAt");

-- CreateIndex
CREATE INDEX "OpsIncident_category_resolvedAt_idx" ON "OpsIncident"("category", "resolvedAt");

-- CreateIndex
CREATE INDEX "OpsIncidentEvent_incidentId_createdAt_idx" ON "OpsIncidentEvent"("incidentId", "createdAt");

-- CreateIndex
CREATE INDEX "OpsIncidentEvent_eventType_createdAt_idx" ON "OpsIncidentEvent"("eventType", "createdAt");

-- AddForeignKey
ALTER TABLE "OpsIncidentEvent" ADD CONSTRAINT "OpsIncidentEvent_incidentId_fkey" FOREIGN KEY ("incidentId") REFERENCES "OpsIncident"("id") ON DELETE CASCADE ON UPDATE CASCADE;

