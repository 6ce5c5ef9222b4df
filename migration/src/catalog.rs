//! What a database's catalog says about a set of tables (and, on PostgreSQL, enum types), as
//! sorted text rows that compare equal exactly when two schemas are the same to Prisma: columns
//! with their types, nullability and defaults, keys with their actions, indexes, enum labels.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

/// Objects of the schema a migration creates.
#[derive(Debug, Clone, Copy)]
pub struct Objects {
    pub tables: &'static [&'static str],
    /// PostgreSQL enum types (plain `TEXT` on SQLite).
    pub enums: &'static [&'static str],
}

/// Every catalog fact about `objects` in the connection's current schema, sorted.
pub async fn snapshot(db: &impl ConnectionTrait, objects: &Objects) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    let tables = sql_list(objects.tables);
    let queries: Vec<String> = match backend {
        DbBackend::Postgres => vec![
            format!("SELECT concat_ws(' | ', 'column', table_name, column_name, ordinal_position::text, data_type, udt_name, is_nullable, coalesce(column_default, '<none>'), coalesce(datetime_precision::text, '-')) AS row FROM information_schema.columns WHERE table_schema = current_schema() AND table_name IN {tables}"),
            format!("SELECT concat_ws(' | ', 'constraint', r.relname, c.conname, c.contype::text, pg_get_constraintdef(c.oid)) AS row FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = current_schema() AND r.relname IN {tables}"),
            format!("SELECT concat_ws(' | ', 'index', tablename, indexname, replace(indexdef, ' ON ' || quote_ident(schemaname) || '.', ' ON ')) AS row FROM pg_indexes WHERE schemaname = current_schema() AND tablename IN {tables}"),
            format!("SELECT concat_ws(' | ', 'enum', t.typname, e.enumsortorder::text, e.enumlabel) AS row FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = current_schema() AND t.typname IN {}", sql_list(objects.enums)),
        ],
        _ => {
            let mut q = vec![format!("SELECT type || ' | ' || name || ' | ' || tbl_name AS row FROM sqlite_master WHERE tbl_name IN {tables}")];
            for table in objects.tables {
                q.push(format!("SELECT 'column | {table} | ' || cid || ' | ' || name || ' | ' || type || ' | ' || \"notnull\" || ' | ' || coalesce(dflt_value, '<none>') || ' | ' || pk AS row FROM pragma_table_info('{table}')"));
                q.push(format!("SELECT 'fk | {table} | ' || id || ' | ' || seq || ' | ' || \"table\" || ' | ' || \"from\" || ' | ' || \"to\" || ' | ' || on_update || ' | ' || on_delete || ' | ' || \"match\" AS row FROM pragma_foreign_key_list('{table}')"));
                q.push(format!("SELECT 'index | {table} | ' || il.name || ' | ' || il.\"unique\" || ' | ' || il.origin || ' | ' || il.partial || ' | ' || ii.seqno || ' | ' || ii.name AS row FROM pragma_index_list('{table}') il, pragma_index_info(il.name) ii"));
            }
            q
        }
    };
    let mut rows = Vec::new();
    for sql in queries {
        for row in db.query_all(Statement::from_string(backend, sql)).await? {
            rows.push(row.try_get::<String>("", "row")?);
        }
    }
    rows.sort();
    Ok(rows)
}

/// Which of `objects` exist in the connection's current schema.
pub async fn existing(db: &impl ConnectionTrait, objects: &Objects) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname IN {} \
             UNION ALL SELECT t.typname AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = current_schema() AND t.typname IN {}",
            sql_list(objects.tables),
            sql_list(objects.enums)
        ),
        _ => format!(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN {}",
            sql_list(objects.tables)
        ),
    };
    let mut names = Vec::new();
    for row in db
        .query_all(Statement::from_sql_and_values(
            backend,
            sql,
            Vec::<Value>::new(),
        ))
        .await?
    {
        names.push(row.try_get::<String>("", "name")?);
    }
    names.sort();
    Ok(names)
}

/// The differences between a found snapshot and the wanted one, one line each.
pub fn differences(found: &[String], want: &[String]) -> Vec<String> {
    let missing = want
        .iter()
        .filter(|w| !found.contains(w))
        .map(|w| format!("expected {w}"));
    let extra = found
        .iter()
        .filter(|f| !want.contains(f))
        .map(|f| format!("found {f}"));
    missing.chain(extra).collect()
}

/// `('a', 'b')`, for names that are our own constants (never input).
fn sql_list(names: &[&str]) -> String {
    if names.is_empty() {
        return "('')".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("({})", quoted.join(", "))
}
