//! The messenger's API, tested from outside: each test starts the real
//! server on `127.0.0.1:0` with a fresh SQLite database and a frozen
//! simulated clock, and talks HTTP to it through `accord-client` (or raw
//! requests, where the test is about bad input).

mod abuse;
mod account;
mod auth;
mod bad_input;
mod consent;
mod contacts;
mod coordination;
mod coordination_props;
mod e2e_server;
mod helpers;
mod kt;
mod ledger;
mod logs;
mod openapi;
mod registration;
mod restriction;
mod routes;
mod transparency;
