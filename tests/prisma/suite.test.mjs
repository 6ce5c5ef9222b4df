// A Prisma app and opsdoctor sharing one database, proven with the real Prisma 6.19 client and CLI
// against the real opsdoctor binary. Run by `cargo test --test api prisma` (tests/api/prisma.rs),
// which sets OPSDOCTOR_BIN, PRISMA_BACKEND (sqlite | postgres) and, for PostgreSQL,
// PRISMA_PG_URLS (two empty scratch databases: shared, Prisma-first; `migrate dev` makes its own
// shadow database, so the role needs CREATEDB).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";

import {
  client,
  createPrismaMigrationsTable,
  Database,
  opsdoctor,
  prisma,
  project,
  serve,
} from "./harness.mjs";

const backend = process.env.PRISMA_BACKEND ?? "sqlite";

function databases(dir) {
  if (backend === "sqlite") {
    return [
      new Database("sqlite", `file:${path.join(dir, "shared.db")}`),
      new Database("sqlite", `file:${path.join(dir, "prisma-first.db")}`),
    ];
  }
  const [shared, first] = (process.env.PRISMA_PG_URLS ?? "").split(",");
  assert.ok(first, "PRISMA_PG_URLS holds two database URLs");
  return [new Database("postgres", shared), new Database("postgres", first)];
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ids = (page) => page.items.map((i) => i.id);

/// Every page of `path` (an API listing), following nextCursor: the ids in order.
async function everyPage(api, p) {
  const seen = [];
  let next = p;
  for (let i = 0; i < 100; i += 1) {
    const { status, body } = await api.get(next);
    assert.equal(status, 200, JSON.stringify(body));
    seen.push(...ids(body));
    if (!body.nextCursor) return seen;
    next = `${p}${p.includes("?") ? "&" : "?"}cursor=${body.nextCursor}`;
  }
  throw new Error(`${p} never ended: ${seen}`);
}

test(`opsdoctor first, then a Prisma app (${backend})`, async (t) => {
  const p = await project(backend, "first");
  const [db] = databases(p.dir);
  const migrated = opsdoctor(db, ["migrate", "up"]);
  assert.equal(migrated.status, 0, migrated.text);

  const app = client(p, db);
  let api = await serve(db);
  t.after(async () => {
    await app.$disconnect();
    await api.stop();
    fs.rmSync(p.dir, { recursive: true, force: true });
  });

  await t.test("Prisma Migrate sees no drift and loses no data", async () => {
    const { body: kept } = await api.post("/ops/incidents", {
      severity: "INFO", category: "OTHER", summary: "kept through migrate",
    });
    // The baseline a team adopting docs/schema.prisma writes (docs/prisma.md).
    const baseline = prisma(p, db, ["migrate", "diff", "--from-empty", "--to-schema-datamodel", p.schema, "--script"]);
    const sql = baseline.stdout;
    assert.match(sql, /^-- CreateTable/m);
    fs.mkdirSync(path.join(p.dir, "migrations/0_init"), { recursive: true });
    fs.writeFileSync(path.join(p.dir, "migrations/0_init/migration.sql"), sql);
    await createPrismaMigrationsTable(p, db);
    // A migration is deployed with the service stopped, as a team would roll it out (on SQLite
    // the CLI would otherwise wait on the service's connections for the file's write lock).
    await api.stop();
    prisma(p, db, ["migrate", "resolve", "--applied", "0_init"]);

    const dev = prisma(p, db, ["migrate", "dev", "--name", "after_opsdoctor", "--skip-generate"]);
    assert.match(dev.text, /Already in sync/, dev.text);
    assert.doesNotMatch(dev.text, /[Dd]rift|reset/, dev.text);
    assert.deepEqual(fs.readdirSync(path.join(p.dir, "migrations")).sort(), ["0_init", "migration_lock.toml"]);

    const diff = prisma(p, db, ["migrate", "diff", "--from-migrations", path.join(p.dir, "migrations"), "--to-schema-datamodel", p.schema, "--exit-code"]);
    assert.match(diff.text, /No difference detected/, diff.text);

    const push = prisma(p, db, ["db", "push", "--skip-generate"]);
    assert.match(push.text, /already in sync/, push.text);
    api = await serve(db);

    const still = await app.opsIncident.findUnique({ where: { id: kept.incident.id } });
    assert.equal(still.summary, "kept through migrate");
    assert.equal(await app.opsSchemaMigration.count(), 4, "opsdoctor's bookkeeping is intact");
  });

  await t.test("Prisma reads every field opsdoctor wrote", async () => {
    const { status, body } = await api.post("/ops/incidents", {
      severity: "CRITICAL", category: "DB", summary: "from opsdoctor",
      detailsJson: { nested: { n: 1.5, list: [1, "two", null] } }, fingerprint: "prisma:suite",
    });
    assert.equal(status, 201, JSON.stringify(body));
    const row = await app.opsIncident.findUnique({ where: { id: body.incident.id }, include: { events: true } });
    assert.equal(row.severity, "CRITICAL");
    assert.equal(row.category, "DB");
    assert.equal(row.summary, "from opsdoctor");
    assert.deepEqual(row.detailsJson, { nested: { n: 1.5, list: [1, "two", null] }, fingerprint: "prisma:suite" });
    assert.equal(row.resolvedAt, null);
    assert.equal(row.resolutionNotes, null);
    assert.equal(row.createdAt.toISOString(), body.incident.createdAt, "the same millisecond on both sides");
    assert.equal(row.events.length, 1);
    assert.equal(row.events[0].eventType, "DETECTED");
    assert.equal(typeof row.events[0].metadataJson, "object");
  });

  await t.test("opsdoctor reads every field Prisma wrote, JSON scalars and defaults included", async () => {
    const scalars = [42, 4.5, true, "text", null, [1, 2], { a: { b: [] } }];
    const written = [];
    for (const value of scalars) {
      written.push(await app.opsIncident.create({
        data: { severity: "WARN", category: "API", summary: `scalar ${JSON.stringify(value)}`, detailsJson: value === null ? { isNull: true } : value },
      }));
    }
    for (const row of written) {
      assert.match(row.id, /^c[a-z0-9]{20,}$/, "@default(cuid())");
      const { status, body } = await api.get(`/ops/incidents/${row.id}`);
      assert.equal(status, 200, JSON.stringify(body));
      assert.deepEqual(body.detailsJson, row.detailsJson);
      assert.equal(body.createdAt, row.createdAt.toISOString(), "@default(now())");
      assert.equal(body.severity, "WARN");
      assert.equal(body.resolvedAt, null);
      assert.equal(body.warnings, undefined);
    }
    const { status, body } = await api.get("/ops/incidents?category=API&limit=100");
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.items.length, scalars.length);
  });

  await t.test("interleaved writers list, filter and page in time order", async () => {
    const order = [];
    for (let i = 0; i < 8; i += 1) {
      if (i % 2 === 0) {
        const { body } = await api.post("/ops/incidents", { severity: "INFO", category: "TUNNEL", summary: `ops ${i}` });
        order.push(body.incident.id);
      } else {
        const row = await app.opsIncident.create({ data: { severity: "INFO", category: "TUNNEL", summary: `prisma ${i}`, detailsJson: {} } });
        order.push(row.id);
      }
      await sleep(3);
    }
    const newest = [...order].reverse();
    assert.deepEqual(await everyPage(api, "/ops/incidents?category=TUNNEL&limit=1"), newest);
    assert.deepEqual(await everyPage(api, "/ops/incidents?category=TUNNEL&limit=3"), newest);
    const byPrisma = await app.opsIncident.findMany({ where: { category: "TUNNEL" }, orderBy: [{ createdAt: "desc" }, { id: "desc" }] });
    assert.deepEqual(byPrisma.map((r) => r.id), newest, "Prisma's orderBy agrees");

    const rows = await app.opsIncident.findMany({ where: { id: { in: order } } });
    const at = (id) => rows.find((r) => r.id === id).createdAt.toISOString();
    const { body } = await api.get(`/ops/incidents?category=TUNNEL&since=${at(order[2])}&until=${at(order[6])}&limit=100`);
    assert.deepEqual(ids(body), order.slice(2, 6).reverse(), "since is inclusive, until exclusive");
    const inWindow = await app.opsIncident.findMany({ where: { category: "TUNNEL", createdAt: { gte: new Date(at(order[2])), lt: new Date(at(order[6])) } } });
    assert.equal(inWindow.length, 4, "Prisma's filter agrees");

    // The timeline pages the DETECTED events of both writers' incidents, oldest first.
    const events = [];
    for (const id of order) {
      if ((await app.opsIncidentEvent.count({ where: { incidentId: id } })) === 0) {
        events.push((await app.opsIncidentEvent.create({ data: { incidentId: id, eventType: "DETECTED", message: "by prisma", metadataJson: { by: "prisma" } } })).id);
      } else {
        events.push((await app.opsIncidentEvent.findFirst({ where: { incidentId: id } })).id);
      }
    }
    const since = at(order[0]);
    const timeline = await everyPage(api, `/ops/timeline?since=${since}&eventType=DETECTED&limit=2`);
    const ours = timeline.filter((id) => events.includes(id));
    const expected = (await app.opsIncidentEvent.findMany({ where: { id: { in: events } }, orderBy: [{ createdAt: "asc" }, { id: "asc" }] })).map((e) => e.id);
    assert.deepEqual(ours, expected);
    assert.equal(new Set(timeline).size, timeline.length, "no event twice");
  });

  await t.test("resolve and append across writers; cascade delete", async () => {
    const mine = await app.opsIncident.create({ data: { severity: "WARN", category: "DEPLOY", summary: "prisma resolves via opsdoctor", detailsJson: {} } });
    const resolved = await api.post(`/ops/incidents/${mine.id}/resolve`, { resolutionNotes: "fixed" });
    assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
    const after = await app.opsIncident.findUnique({ where: { id: mine.id }, include: { events: { orderBy: { createdAt: "asc" } } } });
    assert.ok(after.resolvedAt instanceof Date);
    assert.equal(after.resolutionNotes, "fixed");
    assert.equal(after.events.at(-1).eventType, "RESOLVED");

    const { body: theirs } = await api.post("/ops/incidents", { severity: "WARN", category: "DEPLOY", summary: "opsdoctor's, resolved by the app" });
    await app.opsIncidentEvent.create({ data: { incidentId: theirs.incident.id, eventType: "RECOVERY_SUCCESS", message: "app fixed it", metadataJson: { by: "app" } } });
    await app.opsIncident.update({ where: { id: theirs.incident.id }, data: { resolvedAt: new Date(), resolutionNotes: "by the app" } });
    const shown = await api.get(`/ops/incidents/${theirs.incident.id}`);
    assert.equal(shown.body.status, "resolved");
    assert.deepEqual(shown.body.events.map((e) => e.eventType), ["DETECTED", "RECOVERY_SUCCESS"]);
    const again = await api.post(`/ops/incidents/${theirs.incident.id}/resolve`, {});
    assert.equal(again.status, 409, "already resolved by the app");

    await app.opsIncident.delete({ where: { id: theirs.incident.id } });
    assert.equal(await app.opsIncidentEvent.count({ where: { incidentId: theirs.incident.id } }), 0, "events cascade");
    assert.equal((await api.get(`/ops/incidents/${theirs.incident.id}`)).status, 404);
  });
});

test(`a Prisma app first, then opsdoctor (${backend})`, async (t) => {
  const p = await project(backend, "prisma-first");
  const [, db] = databases(p.dir);
  await createPrismaMigrationsTable(p, db);
  const init = prisma(p, db, ["migrate", "dev", "--name", "init", "--skip-generate"]);
  assert.match(init.text, /in sync with your schema/, init.text);
  const app = client(p, db);
  let api;
  t.after(async () => {
    await app.$disconnect();
    await api?.stop();
    fs.rmSync(p.dir, { recursive: true, force: true });
  });
  const row = await app.opsIncident.create({ data: { severity: "CRITICAL", category: "DB", summary: "before opsdoctor", detailsJson: 7 } });

  await app.$disconnect();
  const up = opsdoctor(db, ["migrate", "up"]);
  assert.equal(up.status, 0, up.text);
  assert.equal(await app.opsSchemaMigration.count(), 4, "every migration recorded");
  await app.$disconnect();
  const again = prisma(p, db, ["migrate", "dev", "--name", "after", "--skip-generate"]);
  assert.match(again.text, /Already in sync/, again.text);

  api = await serve(db);
  const { status, body } = await api.get(`/ops/incidents/${row.id}`);
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.detailsJson, 7);
  assert.equal(body.createdAt, row.createdAt.toISOString());
});
