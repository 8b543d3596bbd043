//! Custom audiences: the rules of both ends.
//!
//! - [`list`]: the business's side, reading and normalising a customer
//!   list (CSV) on its own machine.
//! - [`report`]: what the business may learn, counts released under
//!   differential privacy with a threshold, rounding and a budget.

pub mod list;
pub mod report;

pub use list::*;
