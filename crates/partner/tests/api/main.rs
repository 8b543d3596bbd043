//! The partner's API, tested from outside: each test starts the real
//! partner service on `127.0.0.1:0` with a fresh SQLite database and a
//! frozen simulated clock, and talks HTTP to it as a partner user or the
//! operator would. (The coordination feed between the messenger and the
//! partner is tested end to end in the messenger's API tests.)

mod abuse;
mod audiences;
mod helpers;
mod routes;
mod users;
