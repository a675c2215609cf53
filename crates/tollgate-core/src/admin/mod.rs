//! The admin service: role checks, key generation and credential sealing in front of the
//! store (being written).
