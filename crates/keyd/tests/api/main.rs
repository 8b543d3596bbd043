//! The key service over HTTP, against the real server on 127.0.0.1:0 with
//! a fresh SQLite data directory and a simulated clock per test.

mod admin;
mod bad_input;
mod evaluate;
mod helpers;
mod keys;
mod quota;
mod routes;
