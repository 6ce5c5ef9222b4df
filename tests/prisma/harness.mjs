// The suite's plumbing: the Prisma CLI and a generated Prisma client for one backend, and the real
// opsdoctor binary (`migrate up`, `serve`) against the same database.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const prismaBin = path.join(here, "node_modules/.bin/prisma");
export const TOKEN = "prisma-suite-admin-token-0123456789";

/// One database as both sides address it: Prisma (`file:` or `postgres:`) and opsdoctor.
export class Database {
  constructor(backend, prismaUrl) {
    this.backend = backend;
    this.prismaUrl = prismaUrl;
    this.opsdoctorUrl = backend === "sqlite"
      ? `sqlite://${prismaUrl.slice("file:".length)}?mode=rwc`
      : prismaUrl;
  }
}

/// A working folder under tests/prisma (so the generated client resolves @prisma/client) with the
/// app's copy of docs/schema.prisma for `backend`, and its Prisma client generated there.
export async function project(backend, name) {
  const dir = path.join(here, ".generated", `${name}-${backend}-${process.pid}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "migrations"), { recursive: true });
  const provider = backend === "sqlite" ? "sqlite" : "postgresql";
  const schema = fs
    .readFileSync(path.join(root, "docs/schema.prisma"), "utf8")
    .replace('provider = "postgresql" // or "sqlite"', `provider = "${provider}"`)
    // The Rust-free client (driver adapters, no query engine to download), generated here.
    .replace(
      'provider = "prisma-client-js"',
      `provider = "prisma-client-js"\n  engineType = "client"\n  output = "${path.join(dir, "client")}"`,
    );
  assert(schema.includes(`provider = "${provider}"`), "docs/schema.prisma names its provider");
  fs.writeFileSync(path.join(dir, "schema.prisma"), schema);
  fs.writeFileSync(path.join(dir, "migrations/migration_lock.toml"), `provider = "${provider}"\n`);
  const p = { backend, dir, schema: path.join(dir, "schema.prisma") };
  prisma(p, null, ["generate"]);
  const { PrismaClient } = await import(pathToFileURL(path.join(dir, "client/index.js")).href);
  p.PrismaClient = PrismaClient;
  return p;
}

function assert(ok, what) {
  if (!ok) throw new Error(what);
}

/// Runs the Prisma CLI on `db` (offline: the WebAssembly schema engine through prisma.config.ts);
/// returns its output, and throws with it when the command fails (unless `allowFailure`).
export function prisma(p, db, args, { allowFailure = false } = {}) {
  const env = {
    ...process.env,
    PRISMA_SCHEMA: p.schema,
    PRISMA_MIGRATIONS: path.join(p.dir, "migrations"),
    DATABASE_URL: db?.prismaUrl ?? (p.backend === "sqlite" ? "file::memory:" : process.env.PRISMA_PG_PLACEHOLDER ?? "postgres://localhost/none"),
    PRISMA_HIDE_UPDATE_MESSAGE: "1",
    CHECKPOINT_DISABLE: "1",
  };
  const out = spawnSync(prismaBin, args, { cwd: here, env, encoding: "utf8", timeout: 120_000 });
  const text = `${out.stdout}\n${out.stderr}`;
  if (out.status !== 0 && !allowFailure) {
    throw new Error(`prisma ${args.join(" ")} failed (${out.status}):\n${text}`);
  }
  return { status: out.status, text, stdout: out.stdout };
}

/// Creates Prisma Migrate's own table, as the classic engine does on first use. Workaround for a
/// bug of Prisma 6.19's WebAssembly schema engine: `migrate dev`, `migrate resolve` and
/// `migrate deploy` fail with P1014 ("The underlying table for model `_prisma_migrations` does not
/// exist") instead of creating it. The DDL is the one Prisma Migrate creates.
export async function createPrismaMigrationsTable(p, db) {
  const ddl = db.backend === "sqlite"
    ? `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
        "id" TEXT PRIMARY KEY NOT NULL, "checksum" TEXT NOT NULL, "finished_at" DATETIME,
        "migration_name" TEXT NOT NULL, "logs" TEXT, "rolled_back_at" DATETIME,
        "started_at" DATETIME NOT NULL DEFAULT current_timestamp,
        "applied_steps_count" INTEGER UNSIGNED NOT NULL DEFAULT 0)`
    : `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
        "id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) NOT NULL,
        "finished_at" TIMESTAMPTZ, "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT,
        "rolled_back_at" TIMESTAMPTZ, "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
        "applied_steps_count" INTEGER NOT NULL DEFAULT 0)`;
  // A client of its own, closed at once: on SQLite an open connection would keep the CLI from
  // taking the file's write lock.
  const once = client(p, db);
  try {
    await once.$executeRawUnsafe(ddl);
  } finally {
    await once.$disconnect();
  }
}

/// A Prisma client on `db` through the driver adapter a Prisma app would use.
export function client(p, db) {
  const adapter = db.backend === "sqlite"
    ? new PrismaBetterSQLite3({ url: db.prismaUrl })
    : new PrismaPg({ connectionString: db.prismaUrl });
  return new p.PrismaClient({ adapter });
}

/// Where the binary keeps its spool: out of the source tree, one directory per suite run.
const spoolDir = fs.mkdtempSync(path.join(os.tmpdir(), "opsdoctor-prisma-spool-"));

function opsdoctorEnv(db, extra = {}) {
  return {
    LOG_DIR: "off",
    SPOOL_DIR: spoolDir,
    PATH: process.env.PATH ?? "",
    DATABASE_URL: db.opsdoctorUrl,
    ADMIN_TOKEN: TOKEN,
    DOCTOR_INTERVAL_MS: "0",
    LOG_FORMAT: "json",
    RUST_LOG: "info",
    ...extra,
  };
}

/// `opsdoctor <args>` to completion.
export function opsdoctor(db, args) {
  const out = spawnSync(process.env.OPSDOCTOR_BIN, args, {
    env: opsdoctorEnv(db),
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: out.status, text: `${out.stdout}\n${out.stderr}` };
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/// `opsdoctor serve` on a free loopback port, ready; `stop()` ends it.
export async function serve(db) {
  const port = await freePort();
  const child = spawn(process.env.OPSDOCTOR_BIN, ["serve"], {
    env: opsdoctorEnv(db, { PORT: String(port), HOST: "127.0.0.1" }),
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (d) => {
    log += d;
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`opsdoctor serve exited: ${log}`);
    try {
      const r = await fetch(`${base}/health/live`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`opsdoctor serve did not come up: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const call = async (method, p, body) => {
    const r = await fetch(`${base}${p}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, body: await r.json() };
  };
  return {
    get: (p) => call("GET", p),
    post: (p, body) => call("POST", p, body),
    log: () => log,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
    },
  };
}
