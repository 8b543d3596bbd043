#![no_main]
//! The customer-list reader and normaliser: any bytes end in rows or a
//! clean error, never a panic, and every customer has an identifier.
use accord_domain::audience::{CustomerList, Row};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(list) = CustomerList::new(data, Some("US")) else {
        return;
    };
    for row in list {
        match row {
            Ok(Row::Customer(c)) => assert!(c.phone.is_some() || c.email.is_some()),
            Ok(Row::Rejected(_)) => {}
            Err(_) => break,
        }
    }
});
