//! Dashboard sessions and one-time sign-in links: random ids stored as SHA-256, with an expiry.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;
use crate::model::User;
use crate::token::{hash_token, random_secret};

/// What a dashboard secret is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A signed-in browser (the session cookie).
    Session,
    /// A sign-in link that works once.
    Link,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            SessionKind::Session => "session",
            SessionKind::Link => "link",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            SessionKind::Session => "omoi_w_",
            SessionKind::Link => "omoi_l_",
        }
    }
}

impl Store {
    /// A new session or link of `user_id` that lasts `ttl_ms`; only its hash is stored. Expired
    /// rows are removed on the way.
    pub async fn create_session(
        &self,
        user_id: &str,
        kind: SessionKind,
        ttl_ms: i64,
    ) -> Result<String> {
        let now = now_ms();
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_ms <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let secret = random_secret(kind.prefix())?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (hash, kind, user_id, created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_token(&secret))
        .bind(kind.as_str())
        .bind(user_id)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .execute(&self.pool)
        .await?;
        Ok(secret)
    }

    /// The user of a live session, if `id` is one.
    pub async fn session_user(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.name FROM dashboard_sessions s JOIN users u ON u.id = s.user_id
             WHERE s.hash = $1 AND s.kind = 'session' AND s.expires_ms > $2",
        )
        .bind(hash_token(id))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(User {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
            })
        })
        .transpose()
    }

    /// Uses a sign-in link: its user when it is live, and it is gone either way (one use; two
    /// browsers racing on one link: the delete decides, one wins).
    pub async fn redeem_link(&self, code: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "DELETE FROM dashboard_sessions WHERE hash = $1 AND kind = 'link' RETURNING user_id, expires_ms",
        )
        .bind(hash_token(code))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires: i64 = row.try_get("expires_ms")?;
        if expires <= now_ms() {
            return Ok(None);
        }
        Ok(Some(row.try_get("user_id")?))
    }

    /// Ends a session (sign-out); nothing when there is none.
    pub async fn end_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE hash = $1 AND kind = 'session'")
            .bind(hash_token(id))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
