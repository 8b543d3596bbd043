//! `GET /v1/stream`: the device's WebSocket. On connect it pushes every
//! queued envelope and receipt in mailbox order, then new ones as the
//! device is woken. The client acks with `{"type":"ack","envelope_ids":[..]}`;
//! acked items are deleted. A bad frame gets an error frame and the
//! connection stays up, until too many bad frames in a row.

use crate::e2e::Relay;
use crate::http::error::ErrorBody;
use crate::http::extract::User;
use crate::http::AppState;
use accord_domain::DeviceId;
use accord_e2e::wire::MAX_CLIENT_FRAME_BYTES;
use accord_e2e::{decode_client_frame, encode, ClientFrame, ServerFrame};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::SinkExt;

/// Items read from the mailbox per round.
const PUSH_BATCH: u32 = 256;
/// Bad frames in a row before the connection is closed.
const MAX_BAD_FRAMES: u32 = 16;

/// The device's delivery stream (WebSocket upgrade).
#[utoipa::path(get, path = "/v1/stream", tag = "e2e", security(("bearer" = [])),
    responses((status = 101, description = "WebSocket of ServerFrame / ClientFrame JSON"), (status = 401, body = ErrorBody)))]
pub async fn stream(
    State(s): State<AppState>,
    User(caller): User,
    ws: WebSocketUpgrade,
) -> Response {
    let relay = s.e2e.clone();
    // Small buffers: most connections are idle most of the time.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(MAX_CLIENT_FRAME_BYTES)
        .max_frame_size(MAX_CLIENT_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            if let Err(e) = run(relay, caller.device, socket).await {
                tracing::debug!(error = %e, "stream closed");
            }
        })
}

fn text(frame: &ServerFrame) -> Message {
    Message::Text(
        String::from_utf8(encode(frame))
            .expect("JSON is UTF-8")
            .into(),
    )
}

async fn run(relay: Relay, device: DeviceId, mut ws: WebSocket) -> Result<(), axum::Error> {
    let mut wake = relay.wake().subscribe(device);
    let mut last = 0u64;
    let mut bad = 0u32;
    let mut need_fetch = true;
    loop {
        // Push whatever is queued after what this connection already sent.
        wake.borrow_and_update();
        while need_fetch {
            let (frames, new_last, n) = match relay.fetch(device, last, PUSH_BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "mailbox read failed");
                    let f = ServerFrame::error("internal", "mailbox read failed").expect("valid");
                    ws.send(text(&f)).await?;
                    return Ok(());
                }
            };
            last = new_last;
            for f in &frames {
                ws.feed(text(f)).await?;
            }
            if n > 0 {
                ws.flush().await?;
            }
            need_fetch = n >= PUSH_BATCH as usize;
        }
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    // The notifier went away: re-subscribe.
                    wake = relay.wake().subscribe(device);
                }
                need_fetch = true;
            }
            msg = ws.recv() => {
                let Some(msg) = msg else { return Ok(()) };
                let bytes = match msg? {
                    Message::Text(t) => t.as_str().as_bytes().to_vec(),
                    Message::Binary(b) => b.to_vec(),
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Close(_) => return Ok(()),
                };
                let reply = match decode_client_frame(&bytes) {
                    Ok(ClientFrame::Ping) => { bad = 0; Some(ServerFrame::Pong) }
                    Ok(ClientFrame::Ack { envelope_ids }) => {
                        bad = 0;
                        match relay.ack(device, envelope_ids).await {
                            Ok(_) => None,
                            Err(e) => {
                                tracing::warn!(error = %e, "ack failed");
                                Some(ServerFrame::error("ack_failed", "the ack was not applied; send it again").expect("valid"))
                            }
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        Some(ServerFrame::from_wire_error(&e))
                    }
                };
                if let Some(r) = reply {
                    ws.send(text(&r)).await?;
                }
                need_fetch = wake.has_changed().unwrap_or(true);
                if bad >= MAX_BAD_FRAMES {
                    let f = ServerFrame::error("too_many_bad_frames", "closing after repeated invalid frames").expect("valid");
                    ws.send(text(&f)).await?;
                    let _ = ws.send(Message::Close(None)).await;
                    return Ok(());
                }
            }
        }
    }
}
