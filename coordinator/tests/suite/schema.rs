//! The two migration trees stay apart (applied migrations never change), so this checks that they
//! build the same schema: every table, column by column, in order, with the same type class and
//! nullability, as each database's own catalog reports it after the migrations ran.

use pretty_assertions::assert_eq;
use sqlx::{Connection, Row};

use omoi_coordinator::store::Store;

use super::common::backends;

/// One column as a catalog reports it, with the type reduced to a class both backends share.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    table: String,
    name: String,
    class: &'static str,
    nullable: bool,
}

/// The class of a declared SQLite type or a PostgreSQL `data_type`.
fn class(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" => "integer",
        "text" => "text",
        "real" | "double precision" => "float",
        _ => "unknown",
    }
}

const SQLITE_COLUMNS: &str = "
    SELECT CAST(m.name AS TEXT) AS tbl, CAST(p.name AS TEXT) AS col, CAST(p.type AS TEXT) AS ty,
           CAST(p.\"notnull\" = 0 AND p.pk = 0 AS INTEGER) AS nullable
    FROM sqlite_master m JOIN pragma_table_info(m.name) p
    WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
      AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\'
    ORDER BY m.name, p.cid";

const POSTGRES_COLUMNS: &str = "
    SELECT CAST(table_name AS TEXT) AS tbl, CAST(column_name AS TEXT) AS col,
           CAST(data_type AS TEXT) AS ty,
           CAST(CASE WHEN is_nullable = 'YES' THEN 1 ELSE 0 END AS BIGINT) AS nullable
    FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%'
    ORDER BY table_name, ordinal_position";

async fn columns(url: &str, backend: &str) -> Vec<Column> {
    let store = Store::open(url).await.unwrap();
    store.close().await;
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let sql = if backend == "sqlite" {
        SQLITE_COLUMNS
    } else {
        POSTGRES_COLUMNS
    };
    let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    rows.iter()
        .map(|row| Column {
            table: row.get("tbl"),
            name: row.get("col"),
            class: class(&row.get::<String, _>("ty")),
            nullable: row.get::<i64, _>("nullable") != 0,
        })
        .collect()
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_build_the_same_columns() {
    let dbs = backends().await;
    let mut schemas = Vec::new();
    for db in &dbs {
        schemas.push(columns(&db.url, db.backend).await);
    }
    let sqlite = &schemas[0];
    assert!(
        sqlite
            .iter()
            .any(|c| c.table == "tasks" && c.name == "spec_slice"),
        "the catalog query found no columns: {sqlite:?}"
    );
    assert_eq!(
        sqlite
            .iter()
            .filter(|c| c.class == "unknown")
            .collect::<Vec<_>>(),
        Vec::<&Column>::new(),
        "a type the class mapping does not know"
    );
    match schemas.get(1) {
        Some(postgres) => assert_eq!(sqlite, postgres),
        None => eprintln!("OMOI_TEST_POSTGRES_URL is unset: only the SQLite schema was read"),
    }
}
