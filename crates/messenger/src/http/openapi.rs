//! The OpenAPI 3 document's frame (title, the shared schemes and standard
//! routes); its paths come from the routes themselves (`routes::router`).

use accord_http::openapi::Standard;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Accord messenger", description = "Accounts, devices, policies, consent and the consent ledger."),
    modifiers(&Standard),
)]
pub struct ApiDoc;
