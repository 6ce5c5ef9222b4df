DROP TABLE IF EXISTS "OpsIncidentEvent";
DROP TABLE IF EXISTS "OpsIncident";
DROP TYPE IF EXISTS "OpsIncidentEventType";
DROP TYPE IF EXISTS "OpsIncidentCategory";
DROP TYPE IF EXISTS "OpsIncidentSeverity";
