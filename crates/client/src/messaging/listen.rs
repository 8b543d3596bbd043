//! Receiving: the `GET /v1/stream` WebSocket (acks as frames, a ping
//! as the barrier that the last acks committed), falling back to the
//! `GET /v1/messages?wait_s=` long-poll and `POST /v1/messages/ack`;
//! reconnection with backoff; decryption, delivery receipts handed over
//! once, and acks only after the new state is on disk.

use std::ops::ControlFlow;
use std::time::Duration;

use accord_domain::{DeviceId, Timestamp};
use accord_e2e::{
    ClientFrame, ClientMessageId, DeliveredEnvelope, DeviceKeys, E2eError, EnvelopeId, PeerDevice,
    Plaintext, ServerFrame,
};
use accord_messenger_wire::{AckRequest, AckResponse, ClaimRequest};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use tokio::time::Instant;

use super::device::Device;
use super::error::{MessagingError, Result};
use crate::{to_json, Client, ClientError};

/// Longest wait of one long-poll request (the HTTP client times out at 60 s).
const MAX_POLL_WAIT: Duration = Duration::from_secs(25);
/// How often a WebSocket connection sends a `ping` frame.
const PING_EVERY: Duration = Duration::from_secs(20);
/// How long a listen that stops waits for its last acks to commit.
const ACK_BARRIER_WAIT: Duration = Duration::from_secs(5);
/// Delivery receipts remembered to suppress repeats.
const MAX_SEEN_RECEIPTS: usize = 4_096;
/// Longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Consecutive WebSocket failures after which `listen` long-polls instead.
const WS_FAILURES_BEFORE_POLLING: u32 = 3;
/// While long-polling, the WebSocket is tried again every this many polls.
const POLLS_BETWEEN_WS_TRIES: u32 = 10;

/// What `listen` hands to its caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A decrypted message (a text or a read receipt).
    Message {
        envelope_id: EnvelopeId,
        from: PeerDevice,
        server_ts: Timestamp,
        plaintext: Plaintext,
        /// Set on a business's message: what the server admitted it as.
        /// Render it with [`Device::render_business`] (never show the
        /// plaintext of a template message as it is).
        business: Option<accord_e2e::BusinessMeta>,
    },
    /// The server's delivery receipt: `recipient_device` acked the envelope
    /// of `client_message_id`.
    Delivered {
        client_message_id: ClientMessageId,
        recipient_device: DeviceId,
        delivered_at: Timestamp,
    },
    /// An envelope that could not be decrypted (it is acked all the same,
    /// so it does not block the mailbox).
    Undecryptable {
        envelope_id: EnvelopeId,
        from: PeerDevice,
        code: &'static str,
    },
    /// The server reported an error on the stream.
    ServerError { code: String, message: String },
}

/// How `listen` receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket, long-poll when it fails.
    Auto,
    /// Long-poll only.
    LongPoll,
}

#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    /// Stop after this long (`None`: until the handler stops).
    pub timeout: Option<Duration>,
    pub transport: Transport,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            timeout: None,
            transport: Transport::Auto,
        }
    }
}

/// Why `listen` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenEnd {
    /// The handler returned `ControlFlow::Break`.
    Stopped,
    /// The timeout passed.
    TimedOut,
}

impl Device {
    /// Receives until `handler` breaks or the timeout passes: decrypts each
    /// envelope, saves the state, hands the event over, then acks. Reconnects
    /// with backoff; long-polls when the WebSocket fails.
    pub async fn listen<F>(
        &mut self,
        client: &Client,
        opts: ListenOptions,
        mut handler: F,
    ) -> Result<ListenEnd>
    where
        F: FnMut(Event) -> ControlFlow<()>,
    {
        let deadline = opts.timeout.map(|t| Instant::now() + t);
        self.replenish(client).await?;
        let mut backoff = Duration::from_millis(200);
        let mut ws_failures = 0u32;
        let mut polls = 0u32;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(ListenEnd::TimedOut);
            }
            let use_ws = opts.transport == Transport::Auto
                && (ws_failures < WS_FAILURES_BEFORE_POLLING
                    || polls > 0 && polls.is_multiple_of(POLLS_BETWEEN_WS_TRIES));
            let outcome = if use_ws {
                match self.listen_ws(client, deadline, &mut handler).await {
                    Ok(r) => {
                        ws_failures = 0;
                        polls = 0;
                        Ok(r)
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::Retry) => {
                        ws_failures += 1;
                        if ws_failures >= WS_FAILURES_BEFORE_POLLING {
                            // Long-poll for a while before the next try.
                            polls = 0;
                        }
                        Err(())
                    }
                    Err(Failure::Unavailable) => {
                        ws_failures = WS_FAILURES_BEFORE_POLLING;
                        polls = 0;
                        Err(())
                    }
                }
            } else {
                polls += 1;
                match self.poll_once(client, deadline, &mut handler).await {
                    Ok(r) => Ok(r),
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(_) => Err(()),
                }
            };
            match outcome {
                Ok(Some(end)) => return Ok(end),
                Ok(None) => {
                    backoff = Duration::from_millis(200);
                    if use_ws {
                        // The server closed the stream: reconnect, not at once.
                        let pause = match deadline {
                            Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                            None => backoff,
                        };
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(()) => {
                    // Wait before the next attempt (a poll straight after a
                    // refused upgrade needs no wait).
                    if !(ws_failures == WS_FAILURES_BEFORE_POLLING && use_ws) {
                        let pause = match deadline {
                            Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                            None => backoff,
                        };
                        tokio::time::sleep(pause).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }

    /// One WebSocket connection, until it closes (`Ok(None)`), the handler
    /// stops or the deadline passes.
    async fn listen_ws<F>(
        &mut self,
        client: &Client,
        deadline: Option<Instant>,
        handler: &mut F,
    ) -> std::result::Result<Option<ListenEnd>, Failure>
    where
        F: FnMut(Event) -> ControlFlow<()>,
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
        use tokio_tungstenite::tungstenite::{Error as WsError, Message};

        let url = ws_url(client.base()) + "/v1/stream";
        let mut request = url
            .into_client_request()
            .map_err(|_| Failure::Unavailable)?;
        if let Some(token) = &client.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Failure::Unavailable)?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let connect = tokio_tungstenite::connect_async(request);
        let connected = match deadline {
            Some(d) => match tokio::time::timeout_at(d, connect).await {
                Ok(r) => r,
                Err(_) => return Ok(Some(ListenEnd::TimedOut)),
            },
            None => connect.await,
        };
        let (ws, _) = match connected {
            Ok(c) => c,
            // The upgrade was refused (no stream here, or 401): the long-poll
            // either works or reports the server's own error.
            Err(WsError::Http(_)) => return Err(Failure::Unavailable),
            Err(_) => return Err(Failure::Retry),
        };
        let (mut sink, mut stream) = ws.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            let next = async {
                tokio::select! {
                    m = stream.next() => Some(m),
                    _ = ping.tick() => None,
                }
            };
            let item = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(i) => i,
                    Err(_) => {
                        let _ = sink.close().await;
                        return Ok(Some(ListenEnd::TimedOut));
                    }
                },
                None => next.await,
            };
            let message = match item {
                None => {
                    let frame = serde_json::to_string(&ClientFrame::Ping).expect("frame");
                    sink.send(Message::text(frame))
                        .await
                        .map_err(|_| Failure::Retry)?;
                    continue;
                }
                Some(None) | Some(Some(Err(_))) => return Err(Failure::Retry),
                Some(Some(Ok(m))) => m,
            };
            let bytes: Vec<u8> = match message {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => return Ok(None),
                _ => continue,
            };
            let frame = match accord_e2e::decode_server_frame(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    return Err(Failure::Fatal(MessagingError::Protocol(format!(
                        "bad frame from the server: {e}"
                    ))))
                }
            };
            let (acks, flow) = self
                .handle_frames(client, vec![frame], handler)
                .await
                .map_err(Failure::Fatal)?;
            if !acks.is_empty() {
                let frame =
                    serde_json::to_string(&ClientFrame::Ack { envelope_ids: acks }).expect("frame");
                sink.send(Message::text(frame))
                    .await
                    .map_err(|_| Failure::Retry)?;
            }
            if flow.is_break() {
                // Acks commit in the background: wait for the pong that
                // follows them, so the next listen does not get these
                // envelopes again. Frames that come first are not handled
                // (not acked): they stay queued for the next listen.
                let frame = serde_json::to_string(&ClientFrame::Ping).expect("frame");
                if sink.send(Message::text(frame)).await.is_ok() {
                    let pong = async {
                        while let Some(Ok(m)) = stream.next().await {
                            let bytes: Vec<u8> = match m {
                                Message::Text(t) => t.as_bytes().to_vec(),
                                Message::Binary(b) => b.to_vec(),
                                _ => continue,
                            };
                            if matches!(
                                accord_e2e::decode_server_frame(&bytes),
                                Ok(ServerFrame::Pong)
                            ) {
                                return;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(ACK_BARRIER_WAIT, pong).await;
                }
                let _ = sink.close().await;
                return Ok(Some(ListenEnd::Stopped));
            }
        }
    }

    /// One long-poll and its ack.
    async fn poll_once<F>(
        &mut self,
        client: &Client,
        deadline: Option<Instant>,
        handler: &mut F,
    ) -> std::result::Result<Option<ListenEnd>, Failure>
    where
        F: FnMut(Event) -> ControlFlow<()>,
    {
        let wait = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(MAX_POLL_WAIT),
            None => MAX_POLL_WAIT,
        };
        let frames: Vec<ServerFrame> = match client
            .request(
                Method::GET,
                // Whole seconds, rounded up: a wait of 0 would spin.
                &format!(
                    "/v1/messages?wait_s={}",
                    wait.as_millis().div_ceil(1000).max(1)
                ),
                None,
            )
            .await
        {
            Ok(f) => f,
            Err(e @ ClientError::Api { status, .. })
                if (400..500).contains(&status) && status != 429 =>
            {
                return Err(Failure::Fatal(e.into()))
            }
            Err(_) => return Err(Failure::Retry),
        };
        let (acks, flow) = self
            .handle_frames(client, frames, handler)
            .await
            .map_err(Failure::Fatal)?;
        if !acks.is_empty() {
            client
                .request::<AckResponse>(
                    Method::POST,
                    "/v1/messages/ack",
                    Some(&to_json(&AckRequest { ids: acks })),
                )
                .await
                .map_err(|_| Failure::Retry)?;
        }
        if flow.is_break() {
            return Ok(Some(ListenEnd::Stopped));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Some(ListenEnd::TimedOut));
        }
        Ok(None)
    }

    /// Decrypts and hands over frames in order, until the handler breaks.
    /// Returns the envelope ids to ack (those handled).
    async fn handle_frames<F>(
        &mut self,
        client: &Client,
        frames: Vec<ServerFrame>,
        handler: &mut F,
    ) -> Result<(Vec<EnvelopeId>, ControlFlow<()>)>
    where
        F: FnMut(Event) -> ControlFlow<()>,
    {
        let mut acks = Vec::new();
        let mut used_one_time_key = false;
        let mut flow = ControlFlow::Continue(());
        for frame in frames {
            let event = match frame {
                ServerFrame::Envelope(env) => {
                    used_one_time_key |= env.message_type == accord_e2e::OlmMessageType::PreKey;
                    acks.push(env.id);
                    match self.decrypt_envelope(client, &env).await? {
                        Some(event) => event,
                        None => continue,
                    }
                }
                ServerFrame::Receipt {
                    id,
                    client_message_id,
                    recipient_device,
                    delivered_at,
                } => {
                    // Acked whatever happens: the server keeps it until then.
                    acks.push(id);
                    // A receipt of this device's own ack, or one already
                    // reported, says nothing new.
                    if recipient_device == self.device_id() {
                        continue;
                    }
                    let key = (client_message_id, recipient_device);
                    let new = self.locked(|_, dir| {
                        if dir.seen_receipts.contains(&key) {
                            return false;
                        }
                        if dir.seen_receipts.len() >= MAX_SEEN_RECEIPTS {
                            dir.seen_receipts.pop_front();
                        }
                        dir.seen_receipts.push_back(key.clone());
                        true
                    })?;
                    if !new {
                        continue;
                    }
                    Event::Delivered {
                        client_message_id: key.0,
                        recipient_device,
                        delivered_at,
                    }
                }
                ServerFrame::Pong => continue,
                ServerFrame::Error { code, message } => Event::ServerError { code, message },
            };
            flow = handler(event);
            if flow.is_break() {
                break;
            }
        }
        if used_one_time_key {
            // Best effort: the next batch tries again.
            let _ = self.replenish(client).await;
        }
        Ok((acks, flow))
    }

    async fn decrypt_envelope(
        &mut self,
        client: &Client,
        env: &DeliveredEnvelope,
    ) -> Result<Option<Event>> {
        if self.dir.last_envelope.is_some_and(|last| env.id <= last) {
            return Ok(None);
        }
        let from = PeerDevice {
            account: env.sender_account,
            device: env.sender_device,
        };
        if self.dir.keys_of(&from).is_none() {
            // A device we have not seen: learn its keys from the directory.
            match self
                .claim(client, &ClaimRequest::account(from.account))
                .await
            {
                Ok(claim) => {
                    let devices: Vec<DeviceKeys> =
                        claim.devices.into_iter().map(|(k, _)| k).collect();
                    self.locked(|_, dir| {
                        dir.accounts.insert(claim.account, devices);
                    })?;
                }
                Err(MessagingError::Client(e)) if e.status().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        let result = self.locked(|m, dir| {
            // Checked again under the lock: another process may have
            // handled it meanwhile.
            if dir.last_envelope.is_some_and(|last| env.id <= last) {
                return None;
            }
            dir.last_envelope = Some(env.id);
            Some(match dir.keys_of(&from) {
                None => Err(E2eError::NoSession),
                Some(keys) => {
                    let curve = keys.curve25519;
                    m.decrypt_delivered(&curve, env)
                }
            })
        })?;
        let Some(result) = result else {
            return Ok(None);
        };
        Ok(Some(match result {
            Ok(plaintext) => Event::Message {
                envelope_id: env.id,
                from,
                server_ts: env.server_ts,
                plaintext,
                business: env.business.clone(),
            },
            Err(e) => Event::Undecryptable {
                envelope_id: env.id,
                from,
                code: e.code(),
            },
        }))
    }
}

/// How one connection attempt failed.
enum Failure {
    /// Transient: try again after a pause.
    Retry,
    /// The server does not offer the WebSocket: long-poll.
    Unavailable,
    /// Stop listening with this error.
    Fatal(MessagingError),
}

fn ws_url(base: &str) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_follows_the_scheme() {
        assert_eq!(ws_url("http://127.0.0.1:8080"), "ws://127.0.0.1:8080");
        assert_eq!(ws_url("https://m.example"), "wss://m.example");
    }
}
