// Prisma CLI configuration for the suite: the JavaScript schema engine with a driver adapter, so
// that `prisma migrate` and `prisma db push` run offline (no engine download). The schema file,
// the migrations folder and the database come from the environment the suite sets for each case.
import { defineConfig } from "prisma/config";
import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";

const url = process.env.DATABASE_URL ?? "";

// Workaround for a bug of Prisma 6.19's WebAssembly schema engine on SQLite: it replays a
// migration on the shadow database with `executeRaw`, one prepared statement, which
// better-sqlite3 refuses for a script of several statements ("P3006 … External error"). A script
// without parameters is run with `executeScript` instead, as the classic engine does.
function replayScriptsOnShadow(factory: PrismaBetterSQLite3): PrismaBetterSQLite3 {
  const connect = factory.connectToShadowDb.bind(factory);
  factory.connectToShadowDb = async () => {
    const db = await connect();
    const executeRaw = db.executeRaw.bind(db);
    db.executeRaw = async (query) => {
      if (query.args.length === 0 && /;\s*\S/.test(query.sql)) {
        await db.executeScript(query.sql);
        return 0;
      }
      return executeRaw(query);
    };
    return db;
  };
  return factory;
}

// Workarounds for two bugs of @prisma/adapter-pg 6.19 in the shadow database it creates for
// `migrate dev`: it reaches it with `{ ...config, database }`, and node-postgres lets a
// `connectionString` override `database`, so the "shadow" was the real database ("type … already
// exists"): the config is given as separate fields. And it drops the shadow database before
// closing the pool connected to it ("is being accessed by other users"): the shadow is made here,
// closed first, then dropped.
function pgWithShadow(connectionString: string): PrismaPg {
  const config = pgConfig(connectionString);
  const factory = new PrismaPg(config);
  const connect = factory.connect.bind(factory);
  factory.connect = async () => catalogTypesAsText(await connect());
  factory.connectToShadowDb = async () => {
    const admin = await factory.connect();
    const database = `prisma_migrate_shadow_db_${globalThis.crypto.randomUUID()}`;
    await admin.executeScript(`CREATE DATABASE "${database}"`);
    const shadow = catalogTypesAsText(await new PrismaPg({ ...config, database }).connect());
    const dispose = shadow.dispose.bind(shadow);
    shadow.dispose = async () => {
      await dispose();
      await admin.executeScript(`DROP DATABASE IF EXISTS "${database}"`);
      await admin.dispose();
    };
    return shadow;
  };
  return factory;
}

// Workaround for a third bug of @prisma/adapter-pg 6.19 (prisma/prisma#27403): the schema engine
// reads PostgreSQL's catalogs, whose columns of type `name` (and `"char"`) the adapter refuses
// ("Column type 'name' could not be deserialized"). Their values arrive as strings already: the
// columns are declared `text` to the adapter.
const CATALOG_TEXT_TYPES = new Set([18, 19]); // "char", name
function catalogTypesAsText<T>(adapter: T): T {
  const a = adapter as any;
  const performIO = a.performIO.bind(a);
  a.performIO = async (...args: unknown[]) => {
    const result = await performIO(...args);
    for (const field of result.fields ?? []) {
      if (CATALOG_TEXT_TYPES.has(field.dataTypeID)) field.dataTypeID = 25; // text
    }
    return result;
  };
  return adapter;
}

function pgConfig(connectionString: string) {
  const u = new URL(connectionString);
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password) || undefined,
    database: decodeURIComponent(u.pathname.slice(1)),
  };
}

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: process.env.PRISMA_SCHEMA ?? "schema.prisma",
  migrations: { path: process.env.PRISMA_MIGRATIONS ?? "migrations" },
  async adapter() {
    if (url.startsWith("file:")) {
      return replayScriptsOnShadow(new PrismaBetterSQLite3({ url }));
    }
    return pgWithShadow(url);
  },
});
