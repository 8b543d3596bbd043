//! A device's `/v1/stream` WebSocket, for the benches and the business
//! agent (the SDK has its own, inside `messaging::listen`).

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `base`'s stream as the device of `token`.
pub async fn connect(base: &str, token: &str) -> Result<Ws, String> {
    let mut req = format!(
        "{}/v1/stream",
        base.replace("https://", "wss://")
            .replace("http://", "ws://")
    )
    .into_client_request()
    .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token is not a header value".to_owned())?,
    );
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024);
    Ok(
        tokio_tungstenite::connect_async_with_config(req, Some(config), false)
            .await
            .map_err(|e| e.to_string())?
            .0,
    )
}
