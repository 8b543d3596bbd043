//! The OpenAPI 3 document's frame (title, the shared schemes and standard
//! routes); its paths come from the routes themselves (`routes::router`).

use accord_http::openapi::Standard;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Accord partner", description = "The partner (social/ads) service: the coordination feed from the messenger, partner users, linking, contacts and friend suggestions, custom audiences (advertisers' uploads of customer-list pseudonyms, differentially private counts, campaigns) and the ad endpoint."),
    modifiers(&Standard),
)]
pub struct ApiDoc;
