//! Safety numbers: what two people compare, aloud or side by side, to know
//! that each holds the other's real identity keys.
//!
//! Each account's half is 30 digits drawn from an iterated SHA-512 (5,200
//! rounds, as Signal's numeric fingerprints do, so that finding a key with
//! a chosen half is costly) over a context string, the account id and the
//! account's whole device list as the directory encodes it (every
//! device's ed25519 and curve25519 key). The number is both halves, the
//! one of the smaller account id first, so both sides see the same 60
//! digits, shown in twelve groups of five. A new device or key on either
//! side changes it.

use accord_domain::AccountId;
use accord_messenger_wire::DeviceList;
use sha2::{Digest, Sha256, Sha512};

const CONTEXT: &[u8] = b"accord/safety-number/v1";
const ROUNDS: usize = 5200;

/// SHA-256 of the device list's encoding, hex: what a device remembers of
/// a peer's list to notice a change.
pub fn fingerprint(list: &DeviceList) -> String {
    hex::encode(Sha256::digest(list.encode()))
}

fn half(account: AccountId, list: &DeviceList) -> String {
    let mut input = CONTEXT.to_vec();
    input.extend_from_slice(account.0.as_bytes());
    input.extend_from_slice(&list.encode());
    let mut h: Vec<u8> = Vec::new();
    for _ in 0..ROUNDS {
        let mut d = Sha512::new();
        d.update(&h);
        d.update(&input);
        h = d.finalize().to_vec();
    }
    h[..30]
        .chunks_exact(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

/// The safety number of two accounts, in twelve groups of five digits.
pub fn safety_number(a: (AccountId, &DeviceList), b: (AccountId, &DeviceList)) -> String {
    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let digits = format!("{}{}", half(first.0, first.1), half(second.0, second.1));
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_domain::DeviceId;
    use accord_messenger_wire::DirectoryDevice;

    fn list(n: u8) -> DeviceList {
        DeviceList::new(vec![DirectoryDevice {
            device_id: DeviceId(uuid::Uuid::from_bytes([n; 16])),
            ed25519: [n; 32],
            curve25519: [n; 32],
        }])
    }

    #[test]
    fn both_sides_see_the_same_number_and_a_new_key_changes_it() {
        let (alice, bob) = (AccountId::random(), AccountId::random());
        let n = safety_number((alice, &list(1)), (bob, &list(2)));
        assert_eq!(n, safety_number((bob, &list(2)), (alice, &list(1))));
        assert_eq!(n.split(' ').count(), 12);
        assert!(n
            .split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
        assert_ne!(n, safety_number((alice, &list(1)), (bob, &list(3))));
    }
}
