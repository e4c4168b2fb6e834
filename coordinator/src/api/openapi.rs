//! The OpenAPI 3.1 document of the HTTP API (`GET /api/v1/openapi.json`), built from the very
//! types the handlers take and answer; `coordinator/openapi.json` is the committed copy.

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use omoi_protocol::api::{ErrorBody, IngestAck, InjectedMessage, RawEventBatch};
use omoi_protocol::context::PhaseContext;
use omoi_protocol::standby::{Assignment, Enrolled, StandbyEnrollment, StandbyRegistration};

use super::standby::AssignmentQuery;
use super::types::{
    CreateProject, CreateSpec, EventPage, EventsQuery, ExecuteSpec, Health, MessagesQuery,
    OutputRejected, OutputReview, PostMessage, UpdateProject,
};
use crate::model::{Project, Spec, SpecDetail, TaskRecord};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Anyone, no token.
    Anyone,
    /// A user's bearer token.
    User,
    /// The bearer token of the sandbox named in the path.
    Sandbox,
    /// The pool credential of the standby sandbox named in the path.
    Standby,
    /// The registration credential of the pool named in the body.
    Enrolling,
}

/// One operation: what the table below says of a route.
struct Operation {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    caller: Caller,
    /// The query string's type, when it has one.
    query: Option<Value>,
    /// The JSON body's type, when it takes one.
    body: Option<Value>,
    /// The success status and its JSON body's type (`None`: not JSON).
    ok: (u16, Option<Value>),
    /// Other answers with a body of their own (beside the error body every call may answer).
    other: Vec<(u16, Value)>,
}

/// Collects the schemas of the types named, as `#/components/schemas/…` references.
struct Schemas(SchemaGenerator);

impl Schemas {
    fn of<T: JsonSchema>(&mut self) -> Value {
        self.0.subschema_for::<T>().to_value()
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut s = Schemas(settings.into_generator());
    let ops = operations(&mut s);
    let error = s.of::<ErrorBody>();
    let mut paths = Map::new();
    for op in ops {
        let method = op.method;
        let item = paths.entry(op.path).or_insert_with(|| json!({}));
        item[method] = operation(op, &error);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "omoi coordinator",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Specs, their phases, tasks, sandboxes and events. Errors are \
                            {\"error\": {\"code\", \"message\"}}; a user sees only their own \
                            projects and specs (404 otherwise).",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": s.0.take_definitions(true),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a user token (`omoi token create`), a sandbox's token, or a standby sandbox's pool credential"},
            },
        },
    })
}

fn operation(op: Operation, error: &Value) -> Value {
    let mut parameters: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if let Some(query) = &op.query {
        parameters.push(
            json!({"name": "query", "in": "query", "style": "form", "explode": true,
                               "schema": query}),
        );
    }
    let mut responses = Map::new();
    let (status, body) = op.ok;
    responses.insert(
        status.to_string(),
        match body {
            Some(schema) => json!({"description": "success",
                                   "content": {"application/json": {"schema": schema}}}),
            None => json!({"description": "success"}),
        },
    );
    for (status, schema) in op.other {
        responses.insert(
            status.to_string(),
            json!({"description": "see the schema",
                   "content": {"application/json": {"schema": schema}}}),
        );
    }
    responses.insert(
        "default".into(),
        json!({"description": "an error", "content": {"application/json": {"schema": error}}}),
    );
    let mut value = json!({
        "summary": op.summary,
        "operationId": format!("{} {}", op.method, op.path),
        "responses": responses,
    });
    if !parameters.is_empty() {
        value["parameters"] = Value::Array(parameters);
    }
    if let Some(body) = op.body {
        value["requestBody"] = json!({"required": true,
                                      "content": {"application/json": {"schema": body}}});
    }
    value["security"] = match op.caller {
        Caller::Anyone => json!([]),
        Caller::User | Caller::Sandbox | Caller::Standby | Caller::Enrolling => {
            json!([{"bearer": []}])
        }
    };
    if op.caller == Caller::Sandbox {
        value["description"] = json!("Only with the token of the sandbox in the path.");
    }
    if op.caller == Caller::Enrolling {
        value["description"] =
            json!("Only with the registration credential of the pool named in the body.");
    }
    if op.caller == Caller::Standby {
        value["description"] =
            json!("Only with the pool credential of the standby sandbox in the path.");
    }
    value
}

/// Every route of `super::routes`, with the types its handler takes and answers.
fn operations(s: &mut Schemas) -> Vec<Operation> {
    let op = |method, path, summary, caller| Operation {
        method,
        path,
        summary,
        caller,
        query: None,
        body: None,
        ok: (200, None),
        other: Vec::new(),
    };
    let spec_detail = s.of::<SpecDetail>();
    vec![
        Operation {
            body: Some(s.of::<CreateProject>()),
            ok: (201, Some(s.of::<Project>())),
            ..op("post", "/api/v1/projects", "Adds a project", Caller::User)
        },
        Operation {
            ok: (200, Some(s.of::<Vec<Project>>())),
            ..op(
                "get",
                "/api/v1/projects",
                "Lists your projects",
                Caller::User,
            )
        },
        Operation {
            ok: (200, Some(s.of::<Project>())),
            ..op(
                "get",
                "/api/v1/projects/{id}",
                "Shows one of your projects",
                Caller::User,
            )
        },
        Operation {
            body: Some(s.of::<UpdateProject>()),
            ok: (200, Some(s.of::<Project>())),
            ..op(
                "patch",
                "/api/v1/projects/{id}",
                "Changes one of your projects (fields left out keep their value, null clears)",
                Caller::User,
            )
        },
        Operation {
            body: Some(s.of::<CreateSpec>()),
            ok: (201, Some(s.of::<Spec>())),
            ..op(
                "post",
                "/api/v1/specs",
                "Creates a pending spec",
                Caller::User,
            )
        },
        Operation {
            ok: (200, Some(s.of::<Vec<Spec>>())),
            ..op(
                "get",
                "/api/v1/specs",
                "Lists your specs, newest first",
                Caller::User,
            )
        },
        Operation {
            body: Some(s.of::<CreateSpec>()),
            ok: (201, Some(spec_detail.clone())),
            ..op(
                "post",
                "/api/v1/specs/launch",
                "Creates a spec and starts it",
                Caller::User,
            )
        },
        Operation {
            ok: (200, Some(spec_detail.clone())),
            ..op(
                "get",
                "/api/v1/specs/{id}",
                "A spec with its phases, sandboxes, tasks and final spec",
                Caller::User,
            )
        },
        Operation {
            body: Some(s.of::<ExecuteSpec>()),
            ok: (200, Some(spec_detail.clone())),
            ..op(
                "post",
                "/api/v1/specs/{id}/execute",
                "Starts (or resumes after the last checkpoint) a spec; the body is optional",
                Caller::User,
            )
        },
        Operation {
            ok: (200, Some(spec_detail.clone())),
            ..op(
                "post",
                "/api/v1/specs/{id}/cancel",
                "Cancels a spec",
                Caller::User,
            )
        },
        Operation {
            body: Some(s.of::<ExecuteSpec>()),
            ok: (200, Some(spec_detail.clone())),
            ..op(
                "post",
                "/api/v1/specs/{id}/approve",
                "Continues a spec stopped after a phase; the body is optional",
                Caller::User,
            )
        },
        Operation {
            body: Some(
                json!({"description": "the phase's output document (requirements, design \
                                              or tasks), as the agent submits it"}),
            ),
            ok: (200, Some(s.of::<OutputReview>())),
            other: vec![(422, s.of::<OutputRejected>())],
            ..op(
                "put",
                "/api/v1/specs/{id}/phases/{phase}/output",
                "Replaces the output of the phase the spec stopped after, when the evaluator \
                 passes it",
                Caller::User,
            )
        },
        Operation {
            query: Some(s.of::<EventsQuery>()),
            ok: (200, Some(s.of::<EventPage>())),
            ..op(
                "get",
                "/api/v1/specs/{id}/events",
                "A page of the spec's events; with `Accept: text/event-stream`, the live stream \
                 (resumes after `Last-Event-ID`)",
                Caller::User,
            )
        },
        Operation {
            ok: (200, Some(s.of::<Vec<TaskRecord>>())),
            ..op(
                "get",
                "/api/v1/specs/{id}/tasks",
                "The spec's bridged tasks",
                Caller::User,
            )
        },
        Operation {
            ok: (200, Some(s.of::<TaskRecord>())),
            ..op("get", "/api/v1/tasks/{id}", "One task", Caller::User)
        },
        Operation {
            body: Some(s.of::<RawEventBatch>()),
            ok: (200, Some(s.of::<IngestAck>())),
            ..op(
                "post",
                "/api/v1/sandboxes/{id}/events",
                "Ingests a batch of the sandbox's events",
                Caller::Sandbox,
            )
        },
        Operation {
            ok: (200, Some(s.of::<PhaseContext>())),
            ..op(
                "get",
                "/api/v1/sandboxes/{id}/context",
                "The phase context the sandbox starts from",
                Caller::Sandbox,
            )
        },
        Operation {
            body: Some(s.of::<PostMessage>()),
            ok: (201, Some(s.of::<InjectedMessage>())),
            ..op(
                "post",
                "/api/v1/sandboxes/{id}/messages",
                "Injects a message into the sandbox's running agent",
                Caller::User,
            )
        },
        Operation {
            query: Some(s.of::<MessagesQuery>()),
            ok: (200, Some(s.of::<Vec<InjectedMessage>>())),
            ..op(
                "get",
                "/api/v1/sandboxes/{id}/messages",
                "The messages injected after `after`",
                Caller::Sandbox,
            )
        },
        Operation {
            body: Some(s.of::<StandbyEnrollment>()),
            ok: (200, Some(s.of::<Enrolled>())),
            ..op(
                "post",
                "/api/v1/standby/enroll",
                "A sandbox of a provider's own warm pool (one template for all) enrolls with the \
                 pool's registration credential and gets its standby id and pool credential",
                Caller::Enrolling,
            )
        },
        Operation {
            body: Some(s.of::<StandbyRegistration>()),
            ok: (204, None),
            ..op(
                "post",
                "/api/v1/standby/{id}/register",
                "A warm pool's standby sandbox announces that it waits for an assignment",
                Caller::Standby,
            )
        },
        Operation {
            query: Some(s.of::<AssignmentQuery>()),
            ok: (200, Some(s.of::<Assignment>())),
            ..op(
                "get",
                "/api/v1/standby/{id}/assignment",
                "The standby sandbox's assignment, once (204: none within `wait_secs`; 409 once \
                 delivered)",
                Caller::Standby,
            )
        },
        Operation {
            ok: (
                200,
                Some(json!({"$ref": "https://spec.openapis.org/oas/3.1/schema/2022-10-07"})),
            ),
            ..op(
                "get",
                "/api/v1/openapi.json",
                "This document",
                Caller::Anyone,
            )
        },
        Operation {
            ok: (200, Some(s.of::<Health>())),
            ..op(
                "get",
                "/healthz",
                "Liveness and the backends in use",
                Caller::Anyone,
            )
        },
        op(
            "get",
            "/metrics",
            "Prometheus metrics (text)",
            Caller::Anyone,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::collections::BTreeSet;

    /// The committed copy; `cargo run -p omoi-coordinator --example write_openapi` refreshes it.
    const COMMITTED: &str = include_str!("../../openapi.json");

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let generated = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        assert!(
            generated == COMMITTED,
            "coordinator/openapi.json is out of date; run \
             `cargo run -p omoi-coordinator --example write_openapi` and commit the result"
        );
    }

    /// Every route `routes()` declares (read from its source) is in the document, and no other.
    #[test]
    fn every_route_is_documented() {
        let source = include_str!("mod.rs");
        let mut routed = BTreeSet::new();
        let mut rest = source;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let Some(start) = rest.find('"') else { break };
            let path = &rest[start + 1..];
            let Some(end) = path.find('"') else { break };
            let path = &path[..end];
            let under_api = !(path.starts_with("/healthz") || path.starts_with("/metrics"));
            routed.insert(if under_api {
                format!("/api/v1{path}")
            } else {
                path.to_string()
            });
        }
        let doc = document();
        let documented: BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(documented, routed);
    }
}
