//! The change feed, for programs around quire: the committed op-log rows after a version, at
//! once, or as soon as there are some (a bounded long poll), or as a stream of server-sent events
//! (`Accept: text/event-stream`, resumable with `Last-Event-ID`). Ordered by version, nothing
//! skipped: a reader that fell behind the op log's compaction is told so (409), never handed a
//! gap.
//!
//! Waiters wake on [`crate::feed::Feed`] when the document commits on this server, and read the
//! store every second besides, for commits made on other servers.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use super::extract::{in_range, non_negative, DocId};
use super::history::HistoryEntry;
use super::{not_found, store_problem, ApiState};
use crate::problem::{ApiQuery, DatabaseUnavailable, InvalidParameters, NoSuchDocument, Problem};
use crate::store::HistoryRow;

/// How often a waiter reads the store when nothing woke it (commits on other servers).
const POLL: Duration = Duration::from_secs(1);
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// Rows after this version (default 0: from the start). A stream resumes from
    /// `Last-Event-ID` instead when the client sends one.
    #[param(minimum = 0)]
    since: Option<i64>,
    /// Seconds to wait for a row when there is none yet (0–60, default 0: answer at once). The
    /// server may answer sooner (`--max-feed-wait-secs`), with no rows.
    #[param(minimum = 0, maximum = 60)]
    wait: Option<i64>,
    /// Rows per answer, or per read of a stream (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Committed rows after a version, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeFeed {
    entries: Vec<HistoryEntry>,
    /// Pass as `since` to get what comes next.
    next_since: i64,
    /// More rows were committed than this answer holds: ask again at once.
    more: bool,
}

/// The committed changes after a version: at once, after a wait for the next one (long poll),
/// or as server-sent events with `Accept: text/event-stream` (event `change`, its id the
/// version, its data a history entry; event `deleted` ends it).
#[utoipa::path(
    get, path = "/api/documents/{id}/changes", tag = "documents",
    params(DocId, FeedParams),
    responses(
        (status = 200, description = "Rows after `since` (none when the wait ran out)", content(
            (ChangeFeed = "application/json"),
            (String = "text/event-stream"),
        )),
        InvalidParameters,
        NoSuchDocument,
        (status = 409, description = "`since` is past the current version, or rows after it were compacted away", body = Problem, content_type = "application/problem+json"),
        DatabaseUnavailable,
    )
)]
pub(super) async fn get_changes(
    State(s): State<ApiState>,
    id: DocId,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<FeedParams>,
) -> Result<Response, Problem> {
    let wait = in_range("wait", p.wait, 0, 60, 0)?.min(s.ctx.config.max_feed_wait_secs as i64);
    let limit = in_range("limit", p.limit, 1, 1000, 100)?;
    let since = non_negative("since", p.since)?;
    let id = id.valid()?.to_string();
    let stream = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v >= 0);
    let since = if stream { resume.or(since) } else { since }.unwrap_or(0);
    // Subscribed before the first read, so no commit falls between the read and the wait.
    let rx = s.ctx.feed.subscribe(&id);
    let first = read(&s, &id, since, limit).await?;
    if stream {
        let tail = Tail {
            s,
            id,
            since,
            limit,
            rx,
            queue: first.into(),
            done: false,
        };
        let events = futures_util::stream::unfold(tail, Tail::next);
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
            .into_response());
    }
    let deadline = Instant::now() + Duration::from_secs(wait as u64);
    let mut rx = rx;
    let mut rows = first;
    while rows.is_empty() && Instant::now() < deadline {
        if !wake(&mut rx, &s, deadline).await {
            break;
        }
        rows = read(&s, &id, since, limit).await?;
    }
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_since = rows.last().map_or(since, |r| r.seq);
    Ok(Json(ChangeFeed {
        entries: rows.into_iter().map(HistoryEntry::of).collect(),
        next_since,
        more,
    })
    .into_response())
}

/// Waits for a commit here, the next poll, or `deadline`; false on shutdown.
async fn wake(rx: &mut watch::Receiver<i64>, s: &ApiState, deadline: Instant) -> bool {
    let until = deadline.min(Instant::now() + POLL);
    tokio::select! {
        _ = rx.changed() => true,
        _ = tokio::time::sleep_until(until) => true,
        _ = s.ctx.shutdown.cancelled() => false,
    }
}

/// Up to `limit + 1` rows after `since`: a 404 for a deleted or unknown document, a 409 when
/// `since` is ahead of it or the rows right after `since` were compacted away.
async fn read(s: &ApiState, id: &str, since: i64, limit: i64) -> Result<Vec<HistoryRow>, Problem> {
    let meta = s
        .ctx
        .store
        .meta(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| not_found(id))?;
    if since > meta.version {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "unknown-version",
            "Unknown version",
            format!(
                "since {since} is past document {id}'s current version {}",
                meta.version
            ),
        )
        .with_current_version(meta.version));
    }
    let rows = s
        .ctx
        .store
        .rows_after(id, since, limit + 1)
        .await
        .map_err(store_problem)?;
    let next = rows.first().map_or(meta.version, |r| r.seq - 1);
    if next > since {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "version-compacted",
            "Version no longer available",
            format!(
                "the rows after version {since} were compacted away; read the text now (GET /api/documents/{id}/text) and follow from its version"
            ),
        )
        .with_current_version(meta.version));
    }
    Ok(rows)
}

/// The state of one event stream.
struct Tail {
    s: ApiState,
    id: String,
    since: i64,
    limit: i64,
    rx: watch::Receiver<i64>,
    queue: VecDeque<HistoryRow>,
    done: bool,
}

impl Tail {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Tail)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(row) = self.queue.pop_front() {
                self.since = row.seq;
                let id = row.seq.to_string();
                let data = serde_json::to_string(&HistoryEntry::of(row)).unwrap_or_default();
                let event = Event::default().event("change").id(id).data(data);
                return Some((Ok(event), self));
            }
            match read(&self.s, &self.id, self.since, self.limit).await {
                Ok(rows) if !rows.is_empty() => {
                    self.queue.extend(rows);
                    continue;
                }
                Ok(_) => {}
                Err(problem) => {
                    // Deleted, compacted past, or the store is away: say so and end; a
                    // client reconnects with Last-Event-ID and learns which.
                    self.done = true;
                    let kind = if problem.status == StatusCode::NOT_FOUND.as_u16() {
                        "deleted"
                    } else {
                        "error"
                    };
                    let data = serde_json::to_string(&problem).unwrap_or_default();
                    return Some((Ok(Event::default().event(kind).data(data)), self));
                }
            }
            let far = Instant::now() + Duration::from_secs(3600);
            if !wake(&mut self.rx, &self.s, far).await {
                return None;
            }
        }
    }
}
