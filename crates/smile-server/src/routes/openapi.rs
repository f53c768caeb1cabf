//! The API description, generated from the handlers' `#[utoipa::path]` attributes and
//! request types, served at `GET /v1/openapi.json`.

use super::{
    archives, catalog, deliveries, events, link, listen, operator, payload, platform, portal, templates, webhooks,
    widget,
};
use serde_json::{Value, json};
use smile_core::{ErrorCode, EventType};
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn, PathItemBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{HttpMethod, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Smile event notification system",
        description = "Smile's /v1 API as this server implements it, with its own additions \
            (subscription changes, tests, secret rotation, recovery, events, deliveries, the event \
            catalog, egress IPs, operator publishing) and the Wink Widget's /link/v1 calls. Every \
            JSON answer is the envelope {code, message, requestId, data}."
    ),
    paths(
        webhooks::list, webhooks::create, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::test, webhooks::rotate_secret, webhooks::recover,
        deliveries::of_subscription, deliveries::of_event, deliveries::get, deliveries::retry,
        events::list, events::trigger, events::get, listen::open, listen::next, listen::report, listen::close, portal::create_session, catalog::event_types, catalog::egress_ips, operator::publish,
        link::session, link::list_providers, link::connect, link::list_accounts, link::get_account,
        link::mfa, link::resend_mfa, link::survey, link::revoke,
        platform::create_user, platform::create_token, platform::revoke_account, platform::sync_account,
        platform::list_providers, platform::get_provider, platform::create_invite, platform::invite_logs,
        archives::create, archives::list_own, archives::delete_own, archives::delete, archives::file,
        archives::file_types, archives::link_file_types, archives::classify, archives::upload_payslip,
        archives::payslip_prediction, archives::payslip_predictions, archives::manual_result,
        templates::create_consent, templates::list_consent, templates::delete_consent, templates::create_invite,
        templates::list_invite, templates::get_invite, templates::update_invite, templates::delete_invite,
        payload::of_user, payload::reset_session, payload::of_account, payload::generate_export, payload::export_file,
        payload::disable_monitor, widget::get_origins, widget::put_origins, document,
    ),
    modifiers(&Security, &DataKinds, &Errors)
)]
pub struct ApiDoc;

/// HTTP Basic `apikey:apisecret` for the API, a link token for the widget's calls.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The sandbox's data kinds share two handlers each (a list and one item), made per kind.
struct DataKinds;

impl Modify for DataKinds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, _) in platform::DATA_KINDS {
            let name = path.trim_start_matches("/v1/");
            let list = operation(&format!("list {name}"), false);
            let one = operation(&format!("one of {name}"), true);
            add(openapi, path, HttpMethod::Get, list);
            add(openapi, &format!("{path}/{{id}}"), HttpMethod::Get, one);
        }
    }
}

fn add(
    openapi: &mut utoipa::openapi::OpenApi,
    path: &str,
    method: HttpMethod,
    operation: utoipa::openapi::path::Operation,
) {
    match openapi.paths.paths.get_mut(path) {
        Some(item) => item.merge_operations(PathItemBuilder::new().operation(method, operation).build()),
        None => {
            openapi.paths.paths.insert(path.to_owned(), PathItemBuilder::new().operation(method, operation).build());
        }
    }
}

fn operation(summary: &str, with_id: bool) -> utoipa::openapi::path::Operation {
    let mut builder = OperationBuilder::new()
        .summary(Some(summary))
        .tag("sandbox")
        .security(SecurityRequirement::new("basic", Vec::<String>::new()))
        .response("200", ResponseBuilder::new().description("success, in the Smile envelope"));
    let text = || Some(ObjectBuilder::new().schema_type(Type::String));
    if with_id {
        let id =
            ParameterBuilder::new().name("id").parameter_in(ParameterIn::Path).required(Required::True).schema(text());
        builder = builder.parameter(id);
    } else {
        let size = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(150));
        builder =
            builder.parameter(ParameterBuilder::new().name("size").parameter_in(ParameterIn::Query).schema(Some(size)));
        for name in ["cursor", "userId", "sourceId"] {
            builder =
                builder.parameter(ParameterBuilder::new().name(name).parameter_in(ParameterIn::Query).schema(text()));
        }
    }
    builder.build()
}

/// The errors every operation can answer, in the envelope, added in one place: handlers
/// declare only their success. Which apply follows from the operation itself: its credentials
/// (a key of the wrong kind, or an expired link token) and whether it takes a body.
struct Errors;

impl Modify for Errors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut operations: Vec<&mut utoipa::openapi::path::Operation> = Vec::new();
        for item in openapi.paths.paths.values_mut() {
            operations.extend(
                [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put]
                    .into_iter()
                    .filter_map(Option::as_mut),
            );
        }
        for operation in operations {
            let schemes: Vec<String> = operation
                .security
                .iter()
                .flatten()
                .filter_map(|s| serde_json::to_value(s).ok())
                .filter_map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
                .flatten()
                .collect();
            let mut errors = vec![
                ("400", "bad input or credentials"),
                ("404", "no such resource"),
                ("429", "over the rate limit"),
                ("503", "the database is unavailable"),
            ];
            if schemes.iter().any(|s| s == "basic") {
                errors.push(("403", "a key of the wrong kind"));
            }
            if schemes.iter().any(|s| s == "bearer") {
                errors.push(("401", "an expired or unknown link token"));
            }
            if operation.request_body.is_some() {
                errors.extend([("413", "the body is too large"), ("415", "the body is not JSON")]);
            }
            for (status, description) in errors {
                operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
                    utoipa::openapi::RefOr::T(ResponseBuilder::new().description(description).build())
                });
            }
        }
    }
}

/// Answers that are not the JSON envelope: files, and this document itself.
const NOT_ENVELOPED: &[&str] =
    &["/v1/openapi.json", "/v1/archives/{id}/files/{file}", "/v1/accounts/{id}/exports/{export}"];

/// The document as served: utoipa's, with every JSON answer's envelope and the event catalog.
fn build() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    add_events(&mut document);
    add_envelopes(&mut document);
    document
}

/// Each event type's `data` schema (the catalog's, from `schemars`) becomes a component, its
/// shared definitions too; the envelope a receiver gets is described per type under
/// `webhooks`, and `GET /v1/events/{id}` answers one of them.
fn add_events(document: &mut Value) {
    let mut schemas = serde_json::Map::new();
    let mut webhooks = serde_json::Map::new();
    let mut events = Vec::new();
    for event_type in EventType::ALL {
        let name = event_type.as_str();
        let mut data = event_type.data_schema();
        if let Some(definitions) = data.as_object_mut().and_then(|d| d.remove("$defs")) {
            for (definition, mut schema) in definitions.as_object().cloned().unwrap_or_default() {
                point_refs_at_components(&mut schema);
                schemas.insert(definition, schema);
            }
        }
        if let Some(object) = data.as_object_mut() {
            object.remove("$schema");
            object.remove("title");
        }
        point_refs_at_components(&mut data);
        schemas.insert(format!("{name}.data"), data);
        let event = json!({
            "type": "object",
            "description": event_type.info().description,
            "required": ["id", "version", "type", "createdAt", "data"],
            "properties": {
                "id": {"type": "string"}, "version": {"type": "integer", "const": smile_core::EVENT_VERSION},
                "type": {"const": name}, "createdAt": {"type": "string", "format": "date-time"},
                "data": {"$ref": format!("#/components/schemas/{name}.data")},
            },
        });
        schemas.insert(format!("{name}.event"), event);
        events.push(json!({"$ref": format!("#/components/schemas/{name}.event")}));
        webhooks.insert(name.to_owned(), json!({"post": {
            "summary": event_type.info().description,
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}.event")}}}},
            "responses": {"2XX": {"description": "received; any other answer is retried"}},
        }}));
    }
    schemas.insert("Event".into(), json!({"oneOf": events}));
    if let Some(components) = document["components"]["schemas"].as_object_mut() {
        components.extend(schemas);
    }
    document["webhooks"] = Value::Object(webhooks);
}

fn point_refs_at_components(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get_mut("$ref")
                && let Some(name) = target.strip_prefix("#/$defs/")
            {
                *target = format!("#/components/schemas/{name}");
            }
            object.values_mut().for_each(point_refs_at_components);
        }
        Value::Array(items) => items.iter_mut().for_each(point_refs_at_components),
        _ => {}
    }
}

/// Every JSON answer is the envelope: a success `{code: "OK", message, requestId, data}`
/// (with the event schemas for an event), an error the same with its code.
fn add_envelopes(document: &mut Value) {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let envelope = |code: Value, data: Value| {
        json!({"type": "object", "required": ["code", "message", "requestId"], "properties": {
            "code": code, "message": {"type": "string"}, "requestId": {"type": "string"}, "data": data,
        }})
    };
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        schemas.insert("Success".into(), envelope(json!({"const": "OK"}), json!({})));
        schemas.insert("Failure".into(), envelope(json!({"enum": codes}), json!({"type": "object"})));
        schemas.insert(
            "EventSuccess".into(),
            envelope(json!({"const": "OK"}), json!({"$ref": "#/components/schemas/Event"})),
        );
    }
    let Some(paths) = document["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut().filter(|(path, _)| !NOT_ENVELOPED.contains(&path.as_str())) {
        for operation in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            let Some(responses) = operation["responses"].as_object_mut() else { continue };
            for (status, response) in responses.iter_mut() {
                let schema = match (status.starts_with('2'), path.as_str()) {
                    (true, "/v1/events/{id}") => "EventSuccess",
                    (true, _) => "Success",
                    (false, _) => "Failure",
                };
                if response.get("content").is_none() {
                    response["content"] =
                        json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
                }
            }
        }
    }
}

/// `GET /v1/openapi.json`: this document (OpenAPI 3.1), for anyone.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "this API's OpenAPI 3.1 description, with the event catalog under `webhooks`")))]
pub async fn document() -> axum::Json<Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    axum::Json(DOCUMENT.get_or_init(build).clone())
}
