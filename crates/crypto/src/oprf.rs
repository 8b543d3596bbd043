//! RFC 9497 OPRF (base mode, ristretto255-SHA512). Filled in by the key
//! service work (issue 3).
