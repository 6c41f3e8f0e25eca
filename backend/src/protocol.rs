//! The wire protocol: the Yjs sync protocol and awareness, document id rules and close codes.
//! They are the contract between quire's server and its clients, so they live in crate
//! `quire-wire`, which the terminal editor and the tests share; this module keeps the
//! `crate::protocol::…` paths the server uses.

pub use quire_wire::*;
