//! `GET /v1/stream`: the device's WebSocket. On connect it pushes every
//! queued envelope and receipt in mailbox order, then new ones as they
//! are committed (handed over in memory by `relay::wake`). The client acks
//! with `{"type":"ack","envelope_ids":[..]}`: an acked envelope loses
//! its ciphertext and is marked acked (the row stays as the delivered
//! record until its expiry), an acked receipt is deleted. A bad frame gets
//! an error frame and the connection stays up, until too many bad frames
//! in a row.

use crate::http::extract::User;
use crate::http::AppState;
use crate::relay::wake::Pending;
use crate::relay::{frame_of, Relay, RelayError};
use accord_domain::DeviceId;
use accord_e2e::wire::MAX_CLIENT_FRAME_BYTES;
use accord_e2e::{decode_client_frame, encode, ClientFrame, ServerFrame};
use accord_http::ErrorBody;
use accord_storage::mailbox::MailItem;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};

/// Items read from the mailbox per round.
const PUSH_BATCH: u32 = 256;
/// Bad frames in a row before the connection is closed.
const MAX_BAD_FRAMES: u32 = 16;

/// The device's delivery stream (WebSocket upgrade).
#[utoipa::path(get, path = "/v1/stream", tag = "e2e", security(("bearer" = [])),
    responses((status = 101, description = "WebSocket of ServerFrame / ClientFrame JSON"),
        (status = 400, body = ErrorBody, description = "not a WebSocket upgrade (missing or wrong upgrade headers)"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "policy_acceptance_required")))]
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

/// Acks of one connection awaiting their commit before it stops reading.
const MAX_ACKS_IN_FLIGHT: usize = 64;

async fn run(relay: Relay, device: DeviceId, mut ws: WebSocket) -> Result<(), axum::Error> {
    // Subscribe before the first read: see `relay::wake`.
    let mut sub = relay.wake().subscribe(device);
    let mut last = 0u64;
    let mut bad = 0u32;
    let mut need_fetch = true;
    // Several nodes: re-read now and then, in case a wake-up was lost.
    let mut resync = relay.wake().resync_every().map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    // Acks commit in the background (group commit) while this connection
    // goes on pushing; a failed one is reported with an error frame.
    let mut acks: FuturesUnordered<tokio::task::JoinHandle<Result<u64, RelayError>>> =
        FuturesUnordered::new();
    loop {
        // Read the mailbox after what this connection already sent.
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
            () = sub.changed() => match sub.take() {
                Pending::Refetch => need_fetch = true,
                Pending::Items(items) => {
                    let mut sent = false;
                    for item in &items {
                        if item.id() <= last {
                            continue; // already sent from a mailbox read
                        }
                        last = item.id();
                        if let Some(f) = frame_of(MailItem::clone(item)) {
                            ws.feed(text(&f)).await?;
                            sent = true;
                        }
                    }
                    if sent {
                        ws.flush().await?;
                    }
                }
            },
            _ = async { resync.as_mut().expect("guarded").tick().await }, if resync.is_some() => {
                need_fetch = true;
            }
            Some(done) = acks.next(), if !acks.is_empty() => {
                report_ack(&mut ws, done).await?;
            }
            msg = ws.recv(), if acks.len() < MAX_ACKS_IN_FLIGHT => {
                let Some(msg) = msg else { return Ok(()) };
                let bytes = match msg? {
                    Message::Text(t) => t.as_str().as_bytes().to_vec(),
                    Message::Binary(b) => b.to_vec(),
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Close(_) => return Ok(()),
                };
                let reply = match decode_client_frame(&bytes) {
                    Ok(ClientFrame::Ping) => {
                        bad = 0;
                        // A pong is a barrier: every ack sent before the
                        // ping has committed (or been reported as failed),
                        // so a client that reconnects after it never gets
                        // an acked item again.
                        while let Some(done) = acks.next().await {
                            report_ack(&mut ws, done).await?;
                        }
                        Some(ServerFrame::Pong)
                    }
                    Ok(ClientFrame::Ack { envelope_ids }) => {
                        bad = 0;
                        // A task of its own: the ack commits even if this
                        // connection goes away first.
                        let relay = relay.clone();
                        acks.push(tokio::spawn(async move { relay.ack(device, envelope_ids).await }));
                        None
                    }
                    Err(e) => {
                        bad += 1;
                        Some(ServerFrame::from_wire_error(&e))
                    }
                };
                if let Some(r) = reply {
                    ws.send(text(&r)).await?;
                }
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

/// Tells the client about an ack that did not commit.
async fn report_ack(
    ws: &mut WebSocket,
    done: Result<Result<u64, RelayError>, tokio::task::JoinError>,
) -> Result<(), axum::Error> {
    let done: Result<u64, String> = match done {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = done {
        tracing::warn!(error = %e, "ack failed");
        let f = ServerFrame::error("ack_failed", "the ack was not applied; send it again")
            .expect("valid");
        ws.send(text(&f)).await?;
    }
    Ok(())
}
