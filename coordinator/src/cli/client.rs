//! A small HTTP client of the coordinator's user API.

use omoi_protocol::api::ErrorBody;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CliError, CliResult};

/// Calls one coordinator with one token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>) -> CliResult<Client> {
        let http = reqwest::Client::builder().build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn request(&self, method: Method, path: &str) -> CliResult<RequestBuilder> {
        let token = self.token.as_deref().ok_or_else(|| {
            CliError::Config(
                "no token: pass --token or set OMOI_TOKEN (see `omoi token create`)".into(),
            )
        })?;
        Ok(self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {token}")))
    }

    /// `GET /api/v1{path}` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        decode(self.request(Method::GET, path)?.send().await?).await
    }

    /// `POST /api/v1{path}` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> CliResult<T> {
        decode(self.request(Method::POST, path)?.json(body).send().await?).await
    }

    /// `PUT /api/v1{path}` with a JSON body.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> CliResult<T> {
        decode(self.request(Method::PUT, path)?.json(body).send().await?).await
    }

    /// `PATCH /api/v1{path}` with a JSON body.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> CliResult<T> {
        decode(self.request(Method::PATCH, path)?.json(body).send().await?).await
    }

    /// `GET /api/v1/specs/{id}/events` as a live SSE stream, resuming after `last_event_id`.
    pub async fn event_stream(&self, spec_id: &str, last_event_id: i64) -> CliResult<Response> {
        let response = self
            .request(Method::GET, &format!("/specs/{spec_id}/events"))?
            .header(ACCEPT, "text/event-stream")
            .header("Last-Event-ID", last_event_id.to_string())
            .send()
            .await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(api_error(response).await)
        }
    }
}

async fn decode<T: DeserializeOwned>(response: Response) -> CliResult<T> {
    if response.status().is_success() {
        Ok(response.json().await?)
    } else {
        Err(api_error(response).await)
    }
}

async fn api_error(response: Response) -> CliError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => CliError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => CliError::Api {
            status,
            code: "unreadable".into(),
            message: text.chars().take(200).collect(),
        },
    }
}
