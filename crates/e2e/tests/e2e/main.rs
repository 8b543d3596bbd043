//! One test binary for accord-e2e's public API: sessions between machines
//! through the wire types, signatures, pickles, wire decoding and property
//! tests.

mod helpers;
mod pickles;
mod props;
mod sessions;
mod signatures;
mod wire;
