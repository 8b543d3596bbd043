pub mod admin;
pub mod feed;
pub mod users;
