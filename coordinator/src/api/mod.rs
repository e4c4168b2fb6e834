//! The HTTP API (`/api/v1`, DESIGN §5.1), `/healthz` and `/metrics`, and the extractors that
//! turn malformed input into JSON errors.

pub mod auth;
pub(crate) mod events;
pub mod openapi;
mod projects;
mod review;
pub(crate) mod sandboxes;
pub(crate) mod specs;
pub(crate) mod standby;
pub mod types;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::metrics::Gauges;
use types::Health;

/// The largest event batch body (a final spec can be large); other bodies keep axum's 2 MiB.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Every route, without state.
pub fn routes() -> Router<AppState> {
    let api = Router::new()
        .route("/projects", post(projects::create).get(projects::list))
        .route(
            "/projects/{id}",
            get(projects::show).patch(projects::update),
        )
        .route("/specs", post(specs::create).get(specs::list))
        .route("/specs/launch", post(specs::launch))
        .route("/specs/{id}", get(specs::show))
        .route("/specs/{id}/execute", post(specs::execute))
        .route("/specs/{id}/cancel", post(specs::cancel))
        .route("/specs/{id}/approve", post(review::approve))
        .route(
            "/specs/{id}/phases/{phase}/output",
            put(review::replace_output),
        )
        .route("/specs/{id}/events", get(events::spec_events))
        .route("/specs/{id}/tasks", get(specs::tasks))
        .route("/tasks/{id}", get(specs::task))
        .route(
            "/sandboxes/{id}/events",
            post(sandboxes::ingest).layer(DefaultBodyLimit::max(MAX_BATCH_BYTES)),
        )
        .route("/sandboxes/{id}/context", get(sandboxes::context))
        .route("/openapi.json", get(openapi_document))
        .route(
            "/sandboxes/{id}/messages",
            post(sandboxes::post_message).get(sandboxes::messages),
        )
        .route("/standby/enroll", post(standby::enroll))
        .route("/standby/{id}/register", post(standby::register))
        .route("/standby/{id}/assignment", get(standby::assignment));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
}

/// 200 `ok` when this replica reaches its database, else 503 `unavailable` (so a load balancer
/// takes it out of rotation).
async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let (code, status) = match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(e) => {
            tracing::warn!(error = %e, "the database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    };
    let health = Health {
        status: status.into(),
        database: state.store.backend_name().into(),
        provider: state.provider.name().into(),
        replica: state.settings.replica_id.clone(),
    };
    (code, Json(health))
}

async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse> {
    let gauges = Gauges {
        specs: state.store.spec_counts().await?,
        tasks: state.store.task_counts().await?,
        sandboxes_alive: state.store.count_live_sandboxes().await?,
        replica: state.settings.replica_id.clone(),
    };
    let text = state.metrics.render(&gauges);
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

async fn openapi_document() -> Json<serde_json::Value> {
    Json(openapi::document())
}

async fn not_found() -> Error {
    Error::NotFound("no such route".into())
}

/// A JSON body; syntax errors answer 400, content that does not fit the type 422.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::JsonDataError(e)) => Err(Error::Invalid(e.body_text())),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::TooLarge(rejection.body_text()))
            }
            Err(rejection) => Err(Error::BadRequest(rejection.body_text())),
        }
    }
}

/// A JSON body that may be absent (an empty body is the default value).
#[derive(Debug, Clone)]
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge(e.body_text())
            } else {
                Error::BadRequest(e.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => Error::Invalid(e.to_string()),
                _ => Error::BadRequest(format!("the body is not JSON: {e}")),
            })
    }
}

/// A query string; one that does not parse answers 400.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| Error::BadRequest(e.body_text()))
    }
}
