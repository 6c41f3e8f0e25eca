//! Editing traces (`shared/traces`, format in its README) turned into yrs updates, one per
//! transaction, as the trace's agents would have sent them.
//!
//! Each agent has its own yrs document and client id. A transaction is typed on exactly the
//! merged state of its `parents`: before applying its patches, the agent's document receives
//! every update of the parents' causal history it does not have yet (and nothing else), so the
//! update it produces depends on exactly what the real agent had seen. Causal histories are
//! tracked as version vectors counting each agent's transactions (a delete-only transaction
//! does not advance a yrs state vector, so state vectors cannot be used for this).
//!
//! Sequential traces (no `agent`/`parents`) replay as one agent whose transactions each follow
//! the previous one.

use std::io::Read;
use std::path::Path;

use quire_wire::TEXT_NAME;
use serde::Deserialize;
use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, GetString, Options, ReadTxn, Text, TextRef, Transact, Update};

/// Client ids of trace agents: `AGENT_CLIENT_BASE + agent`.
pub const AGENT_CLIENT_BASE: u64 = 0x51_5549_5200; // "QUIR" + agent

/// A trace as stored (gzipped or plain JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct Trace {
    #[serde(rename = "startContent", default)]
    pub start_content: String,
    #[serde(rename = "endContent")]
    pub end_content: String,
    #[serde(rename = "numAgents", default)]
    pub num_agents: Option<usize>,
    pub txns: Vec<TraceTxn>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TraceTxn {
    /// Who typed it (0 in sequential traces).
    #[serde(default)]
    pub agent: usize,
    /// Indexes of earlier txns whose merged state this txn was typed on; `None` in sequential
    /// traces, meaning "the previous txn".
    #[serde(default)]
    pub parents: Option<Vec<usize>>,
    pub patches: Vec<Patch>,
}

/// `[pos, del, ins]`: at char `pos`, delete `del` chars, then insert `ins`.
#[derive(Debug, Clone, Deserialize)]
pub struct Patch(pub usize, pub usize, pub String);

/// Reads a trace file; `.gz` (or gzip magic) is decompressed.
pub fn load_trace(path: impl AsRef<Path>) -> Result<Trace, String> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot gunzip {}: {e}", path.display()))?;
        out
    } else {
        raw
    };
    serde_json::from_slice(&json).map_err(|e| format!("{} is not a trace: {e}", path.display()))
}

/// The update one trace transaction produced.
#[derive(Debug, Clone)]
pub struct TxnUpdate {
    pub txn: usize,
    pub agent: usize,
    /// v1-encoded yrs update: the transaction's inserts and deletes.
    pub update: Vec<u8>,
}

/// Every transaction of a trace as a yrs update, in trace order.
#[derive(Debug, Clone)]
pub struct TraceUpdates {
    pub num_agents: usize,
    pub updates: Vec<TxnUpdate>,
    pub end_content: String,
}

impl TraceUpdates {
    /// Each agent's updates in the order it produced them.
    pub fn by_agent(&self) -> Vec<Vec<&[u8]>> {
        let mut out = vec![Vec::new(); self.num_agents];
        for u in &self.updates {
            out[u.agent].push(u.update.as_slice());
        }
        out
    }

    /// Interleaves the agents' streams one update each in turn (agent 0, 1, 2, 0, 1, ...),
    /// ignoring causality: a receiver must hold updates whose dependencies have not arrived.
    pub fn round_robin(&self) -> Vec<(usize, &[u8])> {
        let per_agent = self.by_agent();
        let longest = per_agent.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = Vec::with_capacity(self.updates.len());
        for i in 0..longest {
            for (agent, updates) in per_agent.iter().enumerate() {
                if let Some(u) = updates.get(i) {
                    out.push((agent, *u));
                }
            }
        }
        out
    }

    /// The text of a fresh document after applying every update (in trace order).
    pub fn merged_text(&self) -> Result<String, String> {
        merged_text(self.updates.iter().map(|u| u.update.as_slice()))
    }

    /// Checks that merging every update reproduces `endContent`.
    pub fn verify(&self) -> Result<(), String> {
        let text = self.merged_text()?;
        if text == self.end_content {
            Ok(())
        } else {
            let common = text
                .chars()
                .zip(self.end_content.chars())
                .take_while(|(a, b)| a == b)
                .count();
            Err(format!(
                "merged trace updates give {} chars, endContent has {}; first difference at char {common}",
                text.chars().count(),
                self.end_content.chars().count()
            ))
        }
    }
}

/// Applies `updates` (v1) to a fresh document, in one transaction, and returns its text.
pub fn merged_text<'a>(updates: impl IntoIterator<Item = &'a [u8]>) -> Result<String, String> {
    let doc = trace_doc(ClientID::new(1));
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut txn = doc.transact_mut();
    for (i, bytes) in updates.into_iter().enumerate() {
        let update = Update::decode_v1(bytes).map_err(|e| format!("update {i}: {e}"))?;
        txn.apply_update(update)
            .map_err(|e| format!("update {i}: {e}"))?;
    }
    Ok(text.get_string(&txn))
}

fn trace_doc(client_id: ClientID) -> Doc {
    Doc::with_options(Options {
        client_id,
        // Keep deleted content: updates of other agents may still refer to it.
        skip_gc: true,
        ..quire_wire::doc_options()
    })
}

/// Loads a trace and turns it into updates (see [`trace_updates`]).
pub fn load_trace_updates(path: impl AsRef<Path>) -> Result<TraceUpdates, String> {
    trace_updates(&load_trace(path)?)
}

/// Replays `trace` with one yrs document per agent and returns each transaction's update.
pub fn trace_updates(trace: &Trace) -> Result<TraceUpdates, String> {
    if !trace.start_content.is_empty() {
        return Err("traces with a non-empty startContent are not supported".into());
    }
    let num_agents = trace
        .txns
        .iter()
        .map(|t| t.agent + 1)
        .max()
        .unwrap_or(0)
        .max(trace.num_agents.unwrap_or(0));
    // UTF-16 positions equal char positions unless some text is outside the BMP.
    let astral = trace
        .txns
        .iter()
        .flat_map(|t| &t.patches)
        .any(|p| p.2.chars().any(|c| c.len_utf16() == 2));

    struct Agent {
        doc: Doc,
        text: TextRef,
        /// Transactions of each agent this document has integrated (a prefix of each).
        has: Vec<usize>,
    }
    let mut agents: Vec<Agent> = (0..num_agents)
        .map(|a| {
            let doc = trace_doc(ClientID::new(AGENT_CLIENT_BASE + a as u64));
            let text = doc.get_or_insert_text(TEXT_NAME);
            Agent {
                doc,
                text,
                has: vec![0; num_agents],
            }
        })
        .collect();
    let mut by_agent: Vec<Vec<usize>> = vec![Vec::new(); num_agents];
    // Version vector after each txn: how many of each agent's txns its history holds.
    let mut vv_after: Vec<Vec<usize>> = Vec::with_capacity(trace.txns.len());
    let mut updates: Vec<TxnUpdate> = Vec::with_capacity(trace.txns.len());

    for (i, txn) in trace.txns.iter().enumerate() {
        let a = txn.agent;
        let sequential_parent: Vec<usize> = i.checked_sub(1).into_iter().collect();
        let parents = txn.parents.as_deref().unwrap_or(&sequential_parent);
        let mut target = vec![0usize; num_agents];
        for &p in parents {
            if p >= i {
                return Err(format!("txn {i}: parent {p} is not an earlier txn"));
            }
            for (t, v) in target.iter_mut().zip(&vv_after[p]) {
                *t = (*t).max(*v);
            }
        }
        if target[a] != by_agent[a].len() {
            return Err(format!(
                "txn {i}: agent {a} typed it on a state holding {} of its {} earlier txns; \
                 one yrs client cannot fork its own history",
                target[a],
                by_agent[a].len()
            ));
        }
        let agent = &mut agents[a];
        // The agent's last txn is in the parents' history (checked above), so its document
        // holds a subset of that history; only what is missing is merged.
        debug_assert!(agent.has.iter().zip(&target).all(|(h, t)| h <= t));
        {
            let mut txn_mut = agent.doc.transact_mut();
            for b in 0..num_agents {
                for k in agent.has[b]..target[b] {
                    let update = Update::decode_v1(&updates[by_agent[b][k]].update)
                        .map_err(|e| format!("txn {i}: re-reading an update: {e}"))?;
                    txn_mut
                        .apply_update(update)
                        .map_err(|e| format!("txn {i}: merging a parent's update: {e}"))?;
                }
            }
            if txn_mut.has_missing_updates() {
                return Err(format!(
                    "txn {i}: its parents' updates left missing dependencies"
                ));
            }
        }
        agent.has.clone_from(&target);

        let update = {
            let mut t = agent.doc.transact_mut();
            for Patch(pos, del, ins) in &txn.patches {
                let (start, del_units) = if astral {
                    let current = agent.text.get_string(&t);
                    let chars = current.chars().count();
                    if pos + del > chars {
                        return Err(format!(
                            "txn {i}: patch [{pos}, {del}] is past the end ({chars} chars)"
                        ));
                    }
                    let start = crate::client::utf16_offset(&current, *pos);
                    let end = crate::client::utf16_offset(&current, pos + del);
                    (start, end - start)
                } else {
                    let len = agent.text.len(&t) as usize;
                    if pos + del > len {
                        return Err(format!(
                            "txn {i}: patch [{pos}, {del}] is past the end ({len} chars)"
                        ));
                    }
                    (*pos as u32, *del as u32)
                };
                if del_units > 0 {
                    agent.text.remove_range(&mut t, start, del_units);
                }
                if !ins.is_empty() {
                    agent.text.insert(&mut t, start, ins);
                }
            }
            t.encode_update_v1()
        };
        agent.has[a] += 1;
        target[a] += 1;
        vv_after.push(target);
        by_agent[a].push(i);
        updates.push(TxnUpdate {
            txn: i,
            agent: a,
            update,
        });
    }
    Ok(TraceUpdates {
        num_agents,
        updates,
        end_content: trace.end_content.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(json: serde_json::Value) -> Trace {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn concurrent_trace_with_non_bmp_text() {
        // Agent 1 replaces the emoji while agent 0 appends and then inserts concurrently;
        // agent 2 merges both; a delete-only txn; a final merge of everything.
        let t = trace(serde_json::json!({
            "endContent": "¡helXlo!",
            "txns": [
                {"agent": 0, "parents": [], "patches": [[0, 0, "h😀llo"]]},
                {"agent": 1, "parents": [0], "patches": [[1, 1, "e"]]},
                {"agent": 0, "parents": [0], "patches": [[5, 0, " 🌍"]]},
                {"agent": 2, "parents": [1, 2], "patches": [[0, 0, "¡"]]},
                {"agent": 1, "parents": [3], "patches": [[6, 2, ""]]},
                {"agent": 0, "parents": [2], "patches": [[3, 0, "X"]]},
                {"agent": 0, "parents": [4, 5], "patches": [[7, 0, "!"]]}
            ]
        }));
        let updates = trace_updates(&t).unwrap();
        assert_eq!(updates.num_agents, 3);
        assert_eq!(updates.updates.len(), 7);
        updates.verify().unwrap();
        // Any delivery order gives the same text.
        let mut reversed: Vec<&[u8]> = updates
            .updates
            .iter()
            .map(|u| u.update.as_slice())
            .collect();
        reversed.reverse();
        assert_eq!(merged_text(reversed).unwrap(), "¡helXlo!");
        let rr: Vec<&[u8]> = updates.round_robin().into_iter().map(|(_, u)| u).collect();
        assert_eq!(merged_text(rr).unwrap(), "¡helXlo!");
    }

    #[test]
    fn sequential_trace() {
        let t = trace(serde_json::json!({
            "startContent": "",
            "endContent": "añbéc",
            "txns": [
                {"patches": [[0, 0, "abc"]]},
                {"patches": [[2, 0, "🦀"], [1, 0, "ñ"]]},
                {"patches": [[3, 1, "é"]]}
            ]
        }));
        let updates = trace_updates(&t).unwrap();
        assert_eq!(updates.num_agents, 1);
        updates.verify().unwrap();
    }

    #[test]
    fn bad_traces_are_refused() {
        let past_end = trace(serde_json::json!({
            "endContent": "",
            "txns": [{"agent": 0, "parents": [], "patches": [[3, 0, "x"]]}]
        }));
        assert!(trace_updates(&past_end)
            .unwrap_err()
            .contains("past the end"));
        let forked = trace(serde_json::json!({
            "endContent": "",
            "txns": [
                {"agent": 0, "parents": [], "patches": [[0, 0, "a"]]},
                {"agent": 0, "parents": [], "patches": [[0, 0, "b"]]}
            ]
        }));
        assert!(trace_updates(&forked).unwrap_err().contains("fork"));
    }
}
