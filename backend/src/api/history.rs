//! A document's history: the op log page by page, and restoring the text of an older version.

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Path;

use super::documents::{check_name, live_meta};
use super::extract::{check_id, in_range, non_negative, opt_i64, Caller, DocId};
use super::text::{replace_text, text_at, ChangeResult};
use super::{doc_problem, internal, rfc3339, store_problem, version_problem, ApiState};
use crate::blame;
use crate::document::{ApiRequest, DocError};
use crate::edit;
use crate::problem::{
    ApiJson, ApiQuery, DatabaseUnavailable, InvalidParameters, JsonBodyRefused, NoSuchDocument,
    Problem, UnknownVersion,
};
use crate::store::{self, HistoryRow, NamedVersion};
use crate::versions;

const ORIGIN_RESTORE: &str = "rest:restore";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    /// The version to compare from.
    #[param(minimum = 0)]
    from: i64,
    /// The version to compare to (default: the current one).
    #[param(minimum = 0)]
    to: Option<i64>,
}

/// The change between two versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDiff {
    from: i64,
    to: i64,
    /// Edits that turn the text at `from` into the text at `to`, applied in order: the form
    /// `POST …/edits` takes (char positions).
    edits: Vec<edit::Edit>,
}

/// The change between two versions, as edits (JSON), or as a unified diff of lines with
/// `Accept: text/x-diff`.
#[utoipa::path(
    get, path = "/api/documents/{id}/diff", tag = "documents",
    params(DocId, DiffParams),
    responses(
        (status = 200, description = "The change", content(
            (VersionDiff = "application/json"),
            (String = "text/x-diff"),
        )),
        InvalidParameters,
        NoSuchDocument,
        UnknownVersion,
        DatabaseUnavailable,
    )
)]
pub(super) async fn get_diff(
    State(s): State<ApiState>,
    id: DocId,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<DiffParams>,
) -> Result<Response, Problem> {
    let id = id.valid()?;
    let from = non_negative("from", Some(p.from))?;
    let to = non_negative("to", p.to)?;
    let to = text_at(&s, id, to).await?;
    let from = text_at(&s, id, from).await?;
    let unified = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/x-diff"));
    if unified {
        let text = similar::TextDiff::from_lines(&from.text, &to.text)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{id}@{}", from.version),
                &format!("{id}@{}", to.version),
            )
            .to_string();
        return Ok(([(CONTENT_TYPE, "text/x-diff; charset=utf-8")], text).into_response());
    }
    Ok(Json(VersionDiff {
        from: from.version,
        to: to.version,
        edits: edit::diff(&from.text, &to.text),
    })
    .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The version whose text to restore. Give this or `name`.
    #[serde(default, deserialize_with = "opt_i64")]
    #[schema(minimum = 0)]
    version: Option<i64>,
    /// The name of a named version to restore. Give this or `version`.
    #[serde(default)]
    name: Option<String>,
}

/// One op-log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// Its sequence number: the document's version after it.
    #[schema(minimum = 1)]
    seq: i64,
    /// When the server received it (RFC 3339, UTC).
    #[schema(format = DateTime)]
    time: String,
    /// Who sent it: `conn-N` (a WebSocket connection) or `rest:…` (this API).
    origin: Option<String>,
    /// Who made it: the token's subject, or the name the editor publishes; null if unknown.
    author: Option<String>,
    /// The author's colour (`#rrggbb`), the same everywhere.
    color: Option<String>,
    /// Chars it inserted; null if it can no longer be computed.
    #[schema(minimum = 0)]
    inserted: Option<i64>,
    /// Chars it deleted; null if it can no longer be computed.
    #[schema(minimum = 0)]
    deleted: Option<i64>,
}

impl HistoryEntry {
    /// The entry of a row as stored (char counts null when the row was stored without them).
    pub(super) fn of(r: HistoryRow) -> HistoryEntry {
        HistoryEntry {
            seq: r.seq,
            time: rfc3339(r.received_ms),
            origin: r.origin,
            color: r.author.as_deref().map(blame::color_of),
            author: r.author,
            inserted: r.chars.map(|c| c.0),
            deleted: r.chars.map(|c| c.1),
        }
    }
}

/// A page of history, newest first: changes (default), or op-log rows with `group=none`.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    /// Rows grouped into changes (not with `group=none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Vec<Change>>,
    /// One entry per op-log row (only with `group=none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    entries: Option<Vec<HistoryEntry>>,
    /// Pass as `before` to get the next (older) page; null on the last page.
    next_before: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Changes (default 20) or entries (default 100) per page, 1–1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only what came before this version (`next_before` of the previous page).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// `changes` (default): rows grouped by author and time; `none`: one entry per row.
    group: Option<Grouping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    Changes,
    None,
}

/// Consecutive op-log rows by one author, none more than 30 s after the one before.
#[derive(Debug, Serialize, ToSchema)]
pub struct Change {
    /// Who made it; null if unknown (then `origin` says where it came from).
    author: Option<String>,
    /// The author's colour (`#rrggbb`).
    color: Option<String>,
    /// Where its first row came from: `conn-N` (an editor) or `rest:…` (this API).
    origin: Option<String>,
    /// The version before it: its text is the text at `from_version`.
    from_version: i64,
    /// Its first and last row's versions.
    first_version: i64,
    last_version: i64,
    /// How many op-log rows it holds.
    rows: i64,
    /// When its first and last rows came (RFC 3339, UTC).
    #[schema(format = DateTime)]
    started: String,
    #[schema(format = DateTime)]
    ended: String,
    /// Chars its net effect inserted and deleted (typing then erasing counts for nothing); null
    /// when the versions around it can no longer be rebuilt.
    inserted: Option<u64>,
    deleted: Option<u64>,
    /// The start of what it inserted and deleted, up to 80 chars each.
    preview: Option<Preview>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    inserted: String,
    deleted: String,
}

/// The op log, newest first.
#[utoipa::path(
    get, path = "/api/documents/{id}/history", tag = "documents",
    params(DocId, HistoryParams),
    responses(
        (status = 200, description = "A page of history", body = History),
        InvalidParameters,
        NoSuchDocument,
        DatabaseUnavailable,
    )
)]
pub(super) async fn get_history(
    State(s): State<ApiState>,
    id: DocId,
    ApiQuery(p): ApiQuery<HistoryParams>,
) -> Result<Json<History>, Problem> {
    let grouping = p.group.unwrap_or(Grouping::Changes);
    let default = if grouping == Grouping::None { 100 } else { 20 };
    let limit = in_range("limit", p.limit, 1, 1000, default)?;
    let before = match p.before {
        Some(b) if b < 1 => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query parameters",
                format!("before must be at least 1 (got {b})"),
            ))
        }
        Some(b) => b,
        None => i64::MAX,
    };
    let id = id.valid()?;
    live_meta(&s, id).await?;
    if grouping == Grouping::Changes {
        return changes(&s, id, before, limit).await.map(Json);
    }
    let rows = s
        .ctx
        .store
        .history(id, before, limit)
        .await
        .map_err(store_problem)?;
    let missing: Vec<i64> = rows
        .iter()
        .filter(|r| r.chars.is_none())
        .map(|r| r.seq)
        .collect();
    let computed = if missing.is_empty() {
        Vec::new()
    } else {
        versions::replay_counts(&s.ctx.store, id, &missing).await
    };
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten()
        .filter(|&seq| seq > 1);
    let entries = rows
        .into_iter()
        .map(|r| {
            let chars = r.chars.or_else(|| {
                computed
                    .iter()
                    .find(|(seq, _)| *seq == r.seq)
                    .map(|(_, c)| *c)
            });
            HistoryEntry {
                seq: r.seq,
                time: rfc3339(r.received_ms),
                origin: r.origin,
                color: r.author.as_deref().map(blame::color_of),
                author: r.author,
                inserted: chars.map(|c| c.0),
                deleted: chars.map(|c| c.1),
            }
        })
        .collect();
    Ok(Json(History {
        changes: None,
        entries: Some(entries),
        next_before,
    }))
}

/// Up to `limit` changes ending before version `before`, newest first.
/// A change as found in the op log: its oldest and newest row and how many rows it holds.
struct Group {
    oldest: HistoryRow,
    newest: HistoryRow,
    rows: i64,
}

async fn changes(s: &ApiState, id: &str, before: i64, limit: i64) -> Result<History, Problem> {
    let (groups, more) = match groups_by_start(s, id, before, limit).await? {
        Some(found) => found,
        // Rows written before changes were recorded at commit.
        None => groups_by_scan(s, id, before, limit).await?,
    };
    let next_before = more.then(|| groups.last().map(|g| g.oldest.seq)).flatten();
    // The texts around every change on the page (each from the one before or a checkpoint).
    let mut bounds: Vec<i64> = groups
        .iter()
        .flat_map(|g| [g.oldest.seq - 1, g.newest.seq])
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let texts: HashMap<i64, String> =
        match versions::texts_at(&s.ctx.store, &s.ctx.versions, id, &bounds).await {
            Ok(texts) => texts.into_iter().collect(),
            Err(err) => {
                tracing::debug!(doc = id, %err, "history: texts around changes unavailable");
                HashMap::new()
            }
        };
    let changes = groups
        .into_iter()
        .map(
            |Group {
                 oldest,
                 newest,
                 rows,
             }| {
                let from = oldest.seq - 1;
                let summary = texts
                    .get(&from)
                    .zip(texts.get(&newest.seq))
                    .map(|(a, b)| summarize(a, b));
                Change {
                    color: oldest.author.as_deref().map(blame::color_of),
                    author: oldest.author,
                    origin: oldest.origin,
                    from_version: from,
                    first_version: oldest.seq,
                    last_version: newest.seq,
                    rows,
                    started: rfc3339(oldest.received_ms),
                    ended: rfc3339(newest.received_ms),
                    inserted: summary.as_ref().map(|s| s.0),
                    deleted: summary.as_ref().map(|s| s.1),
                    preview: summary.map(|s| s.2),
                }
            },
        )
        .collect();
    Ok(History {
        changes: Some(changes),
        entries: None,
        next_before,
    })
}

/// Up to `limit` changes before `before` from the first version each row records of its change
/// (`change_start`, set at commit): two point reads per change. `None` when a row has none.
async fn groups_by_start(
    s: &ApiState,
    id: &str,
    before: i64,
    limit: i64,
) -> Result<Option<(Vec<Group>, bool)>, Problem> {
    let store = &s.ctx.store;
    let mut groups = Vec::new();
    let mut cursor = before;
    loop {
        let Some(newest) = store
            .history(id, cursor, 1)
            .await
            .map_err(store_problem)?
            .pop()
        else {
            return Ok(Some((groups, false)));
        };
        if groups.len() as i64 == limit {
            return Ok(Some((groups, true)));
        }
        let Some(start) = newest.change_start else {
            return Ok(None);
        };
        let oldest = if start >= newest.seq {
            newest.clone()
        } else {
            // The oldest row still stored: the change's first rows may be compacted away.
            store
                .rows_after(id, start - 1, 1)
                .await
                .map_err(store_problem)?
                .pop()
                .filter(|r| r.seq <= newest.seq)
                .unwrap_or_else(|| newest.clone())
        };
        cursor = oldest.seq;
        let rows = newest.seq - oldest.seq + 1;
        groups.push(Group {
            oldest,
            newest,
            rows,
        });
    }
}

/// Up to `limit` changes before `before`, grouping the rows themselves: newest first, in growing
/// batches, until the page's last change is known complete (a row of another change follows
/// it, or the op log ends).
async fn groups_by_scan(
    s: &ApiState,
    id: &str,
    before: i64,
    limit: i64,
) -> Result<(Vec<Group>, bool), Problem> {
    let mut groups: Vec<Group> = Vec::new();
    let (mut cursor, mut batch, mut exhausted) = (before, 500i64, false);
    while !exhausted && groups.len() as i64 <= limit {
        let rows = s
            .ctx
            .store
            .history(id, cursor, batch)
            .await
            .map_err(store_problem)?;
        exhausted = (rows.len() as i64) < batch;
        batch = (batch * 4).min(100_000);
        for row in rows {
            cursor = row.seq;
            let full = groups.len() as i64 == limit;
            match groups.last_mut() {
                Some(g) if same_change(&row, &g.oldest) => {
                    g.rows += 1;
                    g.oldest = row;
                }
                // The page is full and its last change complete.
                _ if full => return Ok((groups, true)),
                _ => groups.push(Group {
                    oldest: row.clone(),
                    newest: row,
                    rows: 1,
                }),
            }
        }
    }
    Ok((groups, false))
}

/// True when row `older` and the next row `newer` belong to one change (the rule the store
/// applies at commit: [`store::continues_change`]).
fn same_change(older: &HistoryRow, newer: &HistoryRow) -> bool {
    fn key(r: &HistoryRow) -> (Option<&str>, Option<&str>) {
        store::change_key(r.author.as_deref(), r.origin.as_deref())
    }
    store::continues_change(
        (key(older), older.received_ms, older.seq),
        (key(newer), newer.received_ms, newer.seq),
    )
}

const PREVIEW_CHARS: usize = 80;

/// Chars inserted and deleted between two texts, and the start of each.
fn summarize(before: &str, after: &str) -> (u64, u64, Preview) {
    let edits = edit::diff(before, after);
    let old: Vec<char> = before.chars().collect();
    let (mut inserted, mut deleted) = (0u64, 0u64);
    let (mut ins, mut del) = (String::new(), String::new());
    // Each edit's position counts in the text the ones before it left.
    let mut shift: i64 = 0;
    for e in &edits {
        let n = e.insert.chars().count() as u64;
        inserted += n;
        deleted += e.delete;
        let at = (e.pos as i64 - shift).max(0) as usize;
        if !e.insert.is_empty() {
            clip_push(&mut ins, &e.insert);
        }
        if e.delete > 0 {
            let gone: String = old.iter().skip(at).take(e.delete as usize).collect();
            clip_push(&mut del, &gone);
        }
        shift += n as i64 - e.delete as i64;
    }
    (
        inserted,
        deleted,
        Preview {
            inserted: ins,
            deleted: del,
        },
    )
}

/// Appends to a preview, "…"-separated, up to [`PREVIEW_CHARS`].
fn clip_push(out: &mut String, part: &str) {
    let have = out.chars().count();
    if have >= PREVIEW_CHARS {
        return;
    }
    if have > 0 {
        out.push('…');
    }
    let room = PREVIEW_CHARS.saturating_sub(have + 1);
    let mut taken: String = part.chars().take(room).collect();
    if part.chars().count() > room {
        taken.push('…');
    }
    out.push_str(&taken);
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BlameParams {
    /// The version to blame (default: the current one).
    #[param(minimum = 0)]
    version: Option<i64>,
}

/// An author of some of the text.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorShare {
    /// Null for text whose author is unknown.
    name: Option<String>,
    color: Option<String>,
    /// Chars of the text they typed.
    chars: u64,
}

/// Who typed each part of the text.
#[derive(Debug, Serialize, ToSchema)]
pub struct Blame {
    version: i64,
    /// The text's length in chars (where the last span ends).
    length: u64,
    /// Everyone with text in it, most chars first.
    authors: Vec<AuthorShare>,
    /// The text from start to end as runs of one author and one version.
    spans: Vec<blame::Span>,
}

/// Who typed each part of the text, and in which version.
#[utoipa::path(
    get, path = "/api/documents/{id}/blame", tag = "documents",
    params(DocId, BlameParams),
    responses(
        (status = 200, description = "The text as spans by author and version", body = Blame),
        InvalidParameters,
        NoSuchDocument,
        UnknownVersion,
        DatabaseUnavailable,
    )
)]
pub(super) async fn get_blame(
    State(s): State<ApiState>,
    id: DocId,
    ApiQuery(p): ApiQuery<BlameParams>,
) -> Result<Json<Blame>, Problem> {
    let id = id.valid()?;
    let wanted = non_negative("version", p.version)?;
    let current = s
        .documents
        .request(id, |reply| ApiRequest::Info { reply })
        .await
        .map_err(|e| doc_problem(id, e))?
        .version;
    let version = match wanted {
        Some(v) if v > current => {
            return Err(doc_problem(
                id,
                DocError::UnknownVersion {
                    version: v,
                    current,
                },
            ))
        }
        Some(v) => v,
        None => current,
    };
    let doc = versions::doc_at(&s.ctx.store, &s.ctx.versions, id, version)
        .await
        .map_err(|e| version_problem(id, e, "rebuilding the version failed"))?;
    let index = s
        .blame
        .get(&s.ctx.store, id, version)
        .await
        .map_err(store_problem)?;
    let authors: HashMap<u64, Arc<str>> = s
        .ctx
        .store
        .authors(id)
        .await
        .map_err(store_problem)?
        .into_iter()
        .map(|(client, name)| (client, Arc::from(name)))
        .collect();
    let (spans, doc) = tokio::task::spawn_blocking(move || {
        let spans = blame::blame(&doc, &index, &authors);
        (spans, doc)
    })
    .await
    .map_err(|_| internal("computing blame"))?;
    s.ctx.versions.put(id, version, doc);
    let mut shares: Vec<AuthorShare> = Vec::new();
    for span in &spans {
        let len = span.end - span.start;
        match shares.iter_mut().find(|a| a.name == span.author) {
            Some(a) => a.chars += len,
            None => shares.push(AuthorShare {
                color: span.author.as_deref().map(blame::color_of),
                name: span.author.clone(),
                chars: len,
            }),
        }
    }
    shares.sort_by(|a, b| b.chars.cmp(&a.chars).then(a.name.cmp(&b.name)));
    Ok(Json(Blame {
        version,
        length: spans.last().map_or(0, |s| s.end),
        authors: shares,
        spans,
    }))
}

/// A version to name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameVersion {
    /// 1–256 chars, no control characters; unique within the document.
    name: String,
    /// The version to name (default: the current one).
    #[serde(default, deserialize_with = "opt_i64")]
    #[schema(minimum = 0)]
    version: Option<i64>,
}

/// A named version.
#[derive(Debug, Serialize, ToSchema)]
pub struct NamedVersionInfo {
    name: String,
    version: i64,
    /// Who named it, when known.
    author: Option<String>,
    #[schema(format = DateTime)]
    created: String,
    /// Its text (only when one version is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

impl NamedVersionInfo {
    fn from(v: NamedVersion, with_text: bool) -> NamedVersionInfo {
        NamedVersionInfo {
            name: v.name,
            version: v.version,
            author: v.author,
            created: rfc3339(v.created_ms),
            text: with_text.then_some(v.text),
        }
    }
}

/// The document's named versions, newest version first.
#[derive(Debug, Serialize, ToSchema)]
pub struct NamedVersions {
    versions: Vec<NamedVersionInfo>,
}

/// Name a version (default: the current one). Its text is kept with the name, so the name
/// outlives the op log's compaction.
#[utoipa::path(
    post, path = "/api/documents/{id}/versions", tag = "documents",
    params(DocId),
    request_body = NameVersion,
    responses(
        (status = 201, description = "Named", body = NamedVersionInfo),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        NoSuchDocument,
        (status = 409, description = "The name is taken, or the version is unknown or compacted", body = Problem, content_type = "application/problem+json"),
        JsonBodyRefused,
        DatabaseUnavailable,
    )
)]
pub(super) async fn post_version(
    State(s): State<ApiState>,
    id: DocId,
    caller: Caller,
    ApiJson(req): ApiJson<NameVersion>,
) -> Result<Response, Problem> {
    let id = id.valid()?;
    // The rules of document names, and not empty.
    let name = req.name.trim().to_string();
    if name.is_empty() {
        return Err(Problem::bad_request("a version name must not be empty"));
    }
    check_name(Some(&name))?;
    let version = non_negative("version", req.version)?;
    let at = text_at(&s, id, version).await?;
    let named = NamedVersion {
        name,
        version: at.version,
        text: at.text,
        author: caller.0.as_deref().map(str::to_string),
        created_ms: crate::store::now_ms(),
    };
    if !s
        .ctx
        .store
        .name_version(id, &named)
        .await
        .map_err(store_problem)?
    {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "name-taken",
            "Version name taken",
            format!(
                "document {id} already has a version named {:?}; pick another name or delete that one first",
                named.name
            ),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(NamedVersionInfo::from(named, false)),
    )
        .into_response())
}

/// The document's named versions.
#[utoipa::path(
    get, path = "/api/documents/{id}/versions", tag = "documents",
    params(DocId),
    responses(
        (status = 200, description = "Named versions, newest version first", body = NamedVersions),
        NoSuchDocument,
        DatabaseUnavailable,
    )
)]
pub(super) async fn list_versions(
    State(s): State<ApiState>,
    id: DocId,
) -> Result<Json<NamedVersions>, Problem> {
    let id = id.valid()?;
    live_meta(&s, id).await?;
    let versions = s
        .ctx
        .store
        .named_versions(id, None)
        .await
        .map_err(store_problem)?
        .into_iter()
        .map(|v| NamedVersionInfo::from(v, false))
        .collect();
    Ok(Json(NamedVersions { versions }))
}

/// A named version: `{id}` is the document, `{name}` the version's name.
#[derive(Debug, Deserialize)]
pub(super) struct VersionPath {
    id: String,
    name: String,
}

async fn named(s: &ApiState, id: &str, name: &str) -> Result<NamedVersion, Problem> {
    live_meta(s, id).await?;
    s.ctx
        .store
        .named_versions(id, Some(name))
        .await
        .map_err(store_problem)?
        .into_iter()
        .next()
        .ok_or_else(|| Problem::not_found(format!("document {id} has no version named {name:?}")))
}

/// One named version, with its text.
#[utoipa::path(
    get, path = "/api/documents/{id}/versions/{name}", tag = "documents",
    params(DocId, ("name" = String, Path, description = "The version's name")),
    responses(
        (status = 200, description = "The version and its text", body = NamedVersionInfo),
        (status = 404, description = "No such document or version name", body = Problem, content_type = "application/problem+json"),
        DatabaseUnavailable,
    )
)]
pub(super) async fn get_version(
    State(s): State<ApiState>,
    Path(p): Path<VersionPath>,
) -> Result<Json<NamedVersionInfo>, Problem> {
    check_id(&p.id)?;
    let v = named(&s, &p.id, &p.name).await?;
    Ok(Json(NamedVersionInfo::from(v, true)))
}

/// Remove a version's name (the document's history is untouched).
#[utoipa::path(
    delete, path = "/api/documents/{id}/versions/{name}", tag = "documents",
    params(DocId, ("name" = String, Path, description = "The version's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such document or version name", body = Problem, content_type = "application/problem+json"),
        DatabaseUnavailable,
    )
)]
pub(super) async fn delete_version(
    State(s): State<ApiState>,
    Path(p): Path<VersionPath>,
) -> Result<StatusCode, Problem> {
    check_id(&p.id)?;
    named(&s, &p.id, &p.name).await?;
    s.ctx
        .store
        .unname_version(&p.id, &p.name)
        .await
        .map_err(store_problem)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make the text what it was at a version, as new edits (history is kept).
#[utoipa::path(
    post, path = "/api/documents/{id}/restore", tag = "documents",
    params(DocId),
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Restored", body = ChangeResult),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        NoSuchDocument,
        UnknownVersion,
        JsonBodyRefused,
        DatabaseUnavailable,
    )
)]
pub(super) async fn post_restore(
    State(s): State<ApiState>,
    id: DocId,
    caller: Caller,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> Result<Json<ChangeResult>, Problem> {
    let id = id.valid()?;
    let text = match (req.version, req.name) {
        (Some(version), None) => {
            let version = non_negative("version", Some(version))?;
            text_at(&s, id, version).await?.text
        }
        (None, Some(name)) => named(&s, id, &name).await?.text,
        _ => return Err(Problem::bad_request("give either version or name")),
    };
    replace_text(&s, id, text, caller.source(ORIGIN_RESTORE))
        .await
        .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, ms: i64, author: Option<&str>, origin: &str) -> HistoryRow {
        HistoryRow {
            seq,
            received_ms: ms,
            origin: Some(origin.into()),
            author: author.map(str::to_string),
            chars: None,
            change_start: None,
        }
    }

    #[test]
    fn changes_split_at_a_pause_another_author_or_origin() {
        let a = row(1, 1_000, Some("ada"), "conn-1");
        // 30 s later: still the same change; a millisecond more: a new one.
        assert!(same_change(&a, &row(2, 31_000, Some("ada"), "conn-1")));
        assert!(!same_change(&a, &row(2, 31_001, Some("ada"), "conn-1")));
        // Another author, even at once.
        assert!(!same_change(&a, &row(2, 1_000, Some("bob"), "conn-1")));
        // The author decides, not the connection (a reconnect, or REST then an editor).
        assert!(same_change(&a, &row(2, 2_000, Some("ada"), "rest:edits")));
        // Without authors the origin does.
        let anon = row(1, 1_000, None, "conn-1");
        assert!(same_change(&anon, &row(2, 2_000, None, "conn-1")));
        assert!(!same_change(&anon, &row(2, 2_000, None, "conn-2")));
        assert!(!same_change(&anon, &row(2, 2_000, Some("ada"), "conn-1")));
        // Rows compacted away between them: not one change.
        assert!(!same_change(&a, &row(3, 2_000, Some("ada"), "conn-1")));
    }

    #[test]
    fn summaries_show_the_net_change() {
        let (ins, del, p) = summarize("Hello world", "Hello, dear world!");
        assert_eq!((ins, del), (7, 0));
        // Pieces joined by "…", as the char diff found them.
        assert_eq!(p.inserted.replace('…', "").chars().count(), 7, "{p:?}");
        assert!(p.inserted.ends_with('!') && p.deleted.is_empty(), "{p:?}");
        let (ins, del, p) = summarize("abc def ghi", "abc ghi");
        assert_eq!((ins, del, p.deleted.as_str()), (0, 4, "def "));
        let long = "x".repeat(200);
        let (_, _, p) = summarize("", &long);
        assert_eq!(p.inserted.chars().count(), PREVIEW_CHARS);
        assert!(p.inserted.ends_with('…'));
    }
}
