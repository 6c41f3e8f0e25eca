//! quire-server: real-time collaborative text over the Yjs sync protocol, durable in an op log.
//!
//! # Layout
//! - [`config`]: command line and environment settings.
//! - [`server`]: the axum router, shared [`server::Context`], `/healthz` and `/readyz`, and
//!   graceful shutdown.
//! - [`connection`]: one WebSocket: validates frames, forwards them to the document, writes back.
//! - [`documents`]: the open documents, starting a document's actor on first use.
//! - [`document`]: the document actor: owns the yrs `Doc` and `Awareness`, commits updates to the
//!   op log before relaying them, snapshots, unloads when idle.
//! - [`store`]: documents, op log and snapshots in PostgreSQL or SQLite.
//! - [`protocol`]: the Yjs sync protocol as `yrs::sync` implements it, close codes, id rules.
//!
//! An edit's path: browser keystroke → y-websocket Update frame → [`connection`] decodes it →
//! [`document`] applies it to the yrs doc → op-log row committed by [`store`] (group commit) →
//! relayed to every other connection of the document.

pub mod config;
pub mod connection;
pub mod document;
pub mod documents;
pub mod protocol;
pub mod server;
pub mod store;

pub use config::Config;
pub use server::Server;
