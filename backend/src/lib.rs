//! quire-server: real-time collaborative text over the Yjs sync protocol, durable in an op log.
//!
//! # Layout
//! - [`config`]: command line and environment settings.
//! - [`bus`]: NATS between servers sharing a PostgreSQL database: hints of new rows (latency
//!   only; the op log is the truth), presence, heartbeats.
//! - [`server`]: the axum router, the WebSocket upgrade, `/healthz` and `/readyz`, and
//!   graceful shutdown (one path, for `serve` and for embedded servers).
//! - [`context`]: the shared [`context::Context`]: settings, store, health, shutdown token, and
//!   the trackers of document actors and WebSocket connections that shutdown waits for.
//! - [`connection`]: one WebSocket: validates frames, forwards them to the document, writes back.
//! - [`documents`]: the open documents, starting a document's actor on first use.
//! - [`document`]: one open document. [`document::Replica`] holds it with no I/O (yrs `Doc`,
//!   holdback, awareness, text mirror): messages in; rows to commit, frames to send and to whom,
//!   connections to close out. Its actor is the async shell: inbox, rounds, group commit before
//!   relay, snapshots, unloading when idle, shutdown. [`document::Command`] is what it is sent.
//! - [`store`]: documents, op log and snapshots in PostgreSQL or SQLite.
//! - [`protocol`]: (crate quire-wire) the wire contract shared with the terminal and the tests:
//!   frame decoding and encoding, close codes, id rules, the document constructor, sync replies.
//! - [`api`]: the REST API under `/api`, one module per resource (documents, text and edits on
//!   any version, history, search and autocomplete, Yjs update export/import, tokens), their
//!   shared extractors, and the OpenAPI document.
//! - [`versions`]: a document at an older version, rebuilt from the op log off the actor (its
//!   text, edits made on it, history char counts).
//! - [`blame`]: who wrote what: authors' names and colours, and the text as spans by author
//!   and version (an index from Yjs ids to op-log rows).
//! - [`problem`]: RFC 9457 problem details, the body of every REST error.
//! - [`edit`]: char-position edits turned into yrs operations; minimal diffs; edits on an older
//!   version made on a rebuilt copy and merged as a concurrent update.
//! - [`mirror`]: the text as an editor-core buffer and word index, kept in step with the yrs
//!   text by an observer (REST reads, search and autocomplete never walk the CRDT).
//! - [`holdback`]: (crate quire-holdback) out-of-order updates held back until yrs can take
//!   them in causal order; what a syncing peer gets besides the integrated state.
//! - [`feed`]: committed versions of documents, for the change feed's long polls and event
//!   streams and for the webhooks.
//! - [`fuzzing`]: the bodies of the fuzz targets (`fuzz/`), driving a [`document::Replica`]; also
//!   smoke-tested by `cargo test`.
//! - [`auth`]: signed access tokens (document, role, expiry) and the REST API's gate.
//! - [`listener`]: accepting sockets: the connection cap, the request-head timeout,
//!   TCP_NODELAY, the descriptor limit.
//! - [`limits`]: connections per IP, messages per second per connection.
//! - [`origin`]: same origin by default: the `Origin` of upgrades and changes, the `Host` of
//!   every request (DNS rebinding).
//! - [`memory`]: the heap counted by the global allocator, for `--max-memory-bytes`.
//! - [`metrics`]: the counters and histograms behind `/metrics`.
//! - [`webhooks`]: signed JSON events POSTed to `--webhook` URLs when documents change, are
//!   created or deleted (debounced, retried, never in the way of edits).
//! - [`web`]: the browser editor (`web/dist`, embedded in the binary) at `/`.
//!
//! An edit's path: browser keystroke → y-websocket Update frame → [`connection`] decodes it →
//! the document's actor hands it to its [`document::Replica`], which applies it and yields an
//! op-log row and a relay frame → the actor commits the round's rows through [`store`] (group
//! commit) → only then sends the frames to every other connection of the document.

pub mod api;
pub mod auth;
pub mod blame;
pub mod bus;
pub mod config;
pub mod connection;
pub mod context;
pub mod document;
pub mod documents;
pub mod edit;
pub mod feed;
pub mod fuzzing;
pub use quire_holdback as holdback;
pub mod limits;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod mirror;
pub mod origin;
pub mod problem;
pub mod protocol;
pub mod server;
pub mod store;
pub mod versions;
pub mod web;
pub mod webhooks;

pub use config::Config;
pub use server::Server;
