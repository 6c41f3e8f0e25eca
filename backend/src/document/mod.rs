//! One open document: what the rest of the server sends it ([`Command`], [`ApiRequest`]), the
//! replica that holds it without any I/O ([`Replica`]), and the actor task that runs it.
//!
//! - `command.rs`: the messages and answers: joins, leaves, WebSocket messages, REST requests.
//! - `replica.rs`: the yrs `Doc`, holdback, awareness and text mirror; takes decoded messages,
//!   REST operations and stored rows; gives back rows to commit, frames to send and to whom,
//!   connections to close. Unit-tested directly.
//! - `actor.rs`: the async shell: inbox, rounds, group commit (nothing is sent before its rows
//!   are durable), outbound queues, timers, snapshots, unloading, shutdown.

mod actor;
mod command;
mod replica;

pub(crate) use actor::Actor;
pub use command::{
    ApiRequest, Applied, CloseReason, Command, ConnId, DocError, PeerMessage, Reply, SearchHit,
    SearchResult, Source, TextAt,
};
pub use replica::{build_doc, load_doc, server_doc, Outbox, Replica, ReplicaLimits, Target};

#[cfg(test)]
mod tests;
