//! Causal delivery in front of yrs: updates that arrive before their own client's earlier
//! changes are held back, as they came, until those changes are in.
//!
//! Why: Yjs keeps such an update pending. yrs 0.28 instead integrates its blocks behind a
//! "skip" hole when their origins happen to be present, and its encodings of a document with
//! holes or pending blocks (`encode_state_as_update_v1`, merged pending updates) can put a
//! block at the wrong clock: every replica that syncs from it then integrates a block nobody
//! typed, and replicas stop converging (found by tests/simulation.rs with
//! `QUIRE_SIM_CHAOTIC_NET=1`, seed 5067: a pending block at clock 21 re-encoded at 36).
//!
//! So yrs only sees an update once, for each client in it, its blocks continue that client's
//! integrated clocks without a hole ("ready"). Updates whose blocks wait on *another* client's
//! missing block still go to yrs' own pending set, which is Yjs' algorithm and keeps no holes.
//! Everything not yet fully integrated (held here, or pending inside yrs) is "unsettled", kept
//! as the original bytes, and sent verbatim after the integrated state when a peer syncs
//! ([`Holdback::unsettled`]); yrs' merged encoding of pending state is never used.
//!
//! Invariants:
//! - an update is handed to yrs only when ready against the document's state vector;
//! - an entry leaves the holdback only when the state vector covers every block it inserts
//!   and every block it deletes (then yrs has integrated all of it);
//! - if waiting updates are ready only together (each fills another's hole; only bundles such
//!   as sync replies can do that), the largest such set is merged and applied as one update,
//!   so nothing waits for ever on updates that are all here (`tests/any_order.rs` checks any
//!   delivery order against in-order delivery);
//! - that merge runs only when it frees a held bundle, or a held update whose hole a bundle
//!   fills: single-range updates wait in chains that the state vector unwinds by itself, and
//!   merging thousands of them on every arrival stalled a document (`tests/holdback_trace.rs`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Range;

use yrs::error::UpdateError;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, ReadTxn, StateVector, TransactionMut, Update};

/// Updates not yet fully integrated into one document.
///
/// Held entries are indexed by the clock they wait for, so settling after an update touches
/// only those whose client moved: a long out-of-order burst (thousands held) stays linear.
#[derive(Default)]
pub struct Holdback {
    /// By arrival number: the order they are sent on to a syncing peer.
    entries: BTreeMap<u64, Entry>,
    next: u64,
    /// Held entries by the client clock they wait for.
    waiting: BTreeSet<(ClientID, u32, u64)>,
    /// Entries that insert more than one clock range (several clients, or holes). Updates as
    /// clients make them follow causality, so they wait on each other only in chains, which
    /// applying one at a time unwinds; a bundle (a sync reply, a merge) can close a cycle —
    /// held, or pending inside yrs, each waiting for a block the other carries.
    composite: usize,
    /// Entries handed to yrs and not yet covered by the state vector.
    applied: BTreeSet<u64>,
    /// Hashes of the entries' bytes, to know a resend.
    hashes: HashMap<u64, u64>,
    /// Waiting updates merged and applied together so far (see [`Holdback::merges`]).
    merges: u64,
}

struct Entry {
    bytes: Vec<u8>,
    hash: u64,
    shape: Shape,
    /// For a held entry, its key in `waiting`; None once handed to yrs.
    waits: Option<(ClientID, u32)>,
}

/// What an update touches: the clock ranges it inserts and the end of what it touches, per
/// client.
struct Shape {
    inserts: Vec<(ClientID, Vec<Range<u32>>)>,
    /// Per client, the clock the state vector must reach for the update to be fully in.
    reach: Vec<(ClientID, u32)>,
}

impl Shape {
    fn of(update: &Update) -> Shape {
        let mut inserts = Vec::new();
        let mut reach: Vec<(ClientID, u32)> = Vec::new();
        let mut extend =
            |client: ClientID, end: u32| match reach.iter_mut().find(|(c, _)| *c == client) {
                Some((_, e)) => *e = (*e).max(end),
                None => reach.push((client, end)),
            };
        for (client, ranges) in update.insertions(true).iter() {
            // One range per run of blocks: yrs lists adjacent blocks as separate ranges.
            let ranges = joined(ranges.iter().cloned().collect());
            if let Some(end) = ranges.iter().map(|r| r.end).max() {
                extend(*client, end);
            }
            inserts.push((*client, ranges));
        }
        for (client, ranges) in update.delete_set().iter() {
            if let Some(end) = ranges.iter().map(|r| r.end).max() {
                extend(*client, end);
            }
        }
        Shape { inserts, reach }
    }

    /// The first hole: a client whose inserted blocks do not continue `sv`, and the clock its
    /// state must reach first. None when the update is ready.
    fn first_gap(&self, sv: &StateVector) -> Option<(ClientID, u32)> {
        for (client, ranges) in &self.inserts {
            let mut reach = sv.get(client);
            for r in ranges {
                if r.start > reach {
                    return Some((*client, r.start));
                }
                reach = reach.max(r.end);
            }
        }
        None
    }

    /// More than one clock range in all (several clients, or a hole).
    fn is_composite(&self) -> bool {
        self.inserts.iter().map(|(_, r)| r.len()).sum::<usize>() > 1
    }

    /// True when `sv` includes everything the update inserts or deletes.
    fn covered(&self, sv: &StateVector) -> bool {
        self.reach
            .iter()
            .all(|(client, end)| sv.get(client) >= *end)
    }
}

/// Clock ranges per client, for comparing what updates cover.
#[derive(Default)]
struct Ranges(BTreeMap<ClientID, Vec<Range<u32>>>);

impl Ranges {
    fn add(&mut self, set: &yrs::IdSet) {
        for (client, ranges) in set.iter() {
            self.0
                .entry(*client)
                .or_default()
                .extend(ranges.iter().cloned());
        }
    }

    /// Sorted, overlapping and touching ranges joined.
    fn normalized(mut self) -> BTreeMap<ClientID, Vec<Range<u32>>> {
        for ranges in self.0.values_mut() {
            *ranges = joined(std::mem::take(ranges));
        }
        self.0.retain(|_, r| !r.is_empty());
        self.0
    }
}

/// `ranges` sorted, with overlapping and touching ones joined.
fn joined(mut ranges: Vec<Range<u32>>) -> Vec<Range<u32>> {
    ranges.sort_by_key(|r| r.start);
    let mut joined: Vec<Range<u32>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match joined.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => joined.push(r),
        }
    }
    joined
}

/// What [`Holdback::apply`] did with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to yrs now.
    Applied,
    /// Held back: a block of its client before it is missing.
    Held,
    /// The same bytes are already held or waiting: nothing new.
    Duplicate,
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl Holdback {
    /// Applies `update` (decoded from `bytes`) to the document, or holds it back; then applies
    /// every held update that became ready. Errors are yrs' (the update or a held one is
    /// invalid); a panic inside yrs propagates, for the caller to contain.
    pub fn apply(
        &mut self,
        txn: &mut TransactionMut,
        bytes: &[u8],
        update: Update,
    ) -> Result<Delivery, UpdateError> {
        let hash = if self.entries.is_empty() {
            0
        } else {
            let hash = hash_of(bytes);
            if let Some(seq) = self.hashes.get(&hash) {
                if self.entries[seq].bytes == bytes {
                    return Ok(Delivery::Duplicate);
                }
            }
            hash
        };
        let shape = Shape::of(&update);
        let sv = txn.state_vector();
        if let Some(gap) = shape.first_gap(&sv) {
            self.insert(bytes, hash, shape, Some(gap));
            self.settle(txn)?;
            return Ok(Delivery::Held);
        }
        txn.apply_update(update)?;
        if txn.has_missing_updates() || !self.entries.is_empty() {
            if !shape.covered(&txn.state_vector()) {
                self.insert(bytes, hash, shape, None);
            }
            self.settle(txn)?;
        }
        Ok(Delivery::Applied)
    }

    fn insert(&mut self, bytes: &[u8], hash: u64, shape: Shape, waits: Option<(ClientID, u32)>) {
        let seq = self.next;
        self.next += 1;
        let hash = if hash == 0 { hash_of(bytes) } else { hash };
        if shape.is_composite() {
            self.composite += 1;
        }
        self.hashes.entry(hash).or_insert(seq);
        match waits {
            Some((client, clock)) => {
                self.waiting.insert((client, clock, seq));
            }
            None => {
                self.applied.insert(seq);
            }
        }
        self.entries.insert(
            seq,
            Entry {
                bytes: bytes.to_vec(),
                hash,
                shape,
                waits,
            },
        );
    }

    /// Marks held entry `seq` as handed to yrs.
    fn unhold(&mut self, seq: u64) {
        let entry = self.entries.get_mut(&seq).expect("held entry");
        if let Some((client, clock)) = entry.waits.take() {
            self.waiting.remove(&(client, clock, seq));
        }
        self.applied.insert(seq);
    }

    fn remove(&mut self, seq: u64) {
        if let Some(entry) = self.entries.remove(&seq) {
            if entry.shape.is_composite() {
                self.composite -= 1;
            }
            if self.hashes.get(&entry.hash) == Some(&seq) {
                self.hashes.remove(&entry.hash);
            }
        }
        self.applied.remove(&seq);
    }

    /// Held entries whose awaited client clock `sv` has reached.
    fn woken(&self, sv: &StateVector) -> Vec<u64> {
        let mut woken = Vec::new();
        let mut cursor = self.waiting.iter().next().copied();
        while let Some((client, _, _)) = cursor {
            let have = sv.get(&client);
            woken.extend(
                self.waiting
                    .range((client, 0, 0)..=(client, have, u64::MAX))
                    .map(|&(_, _, seq)| seq),
            );
            // On to the next client.
            cursor = self
                .waiting
                .range((client, u32::MAX, u64::MAX)..)
                .find(|(c, _, _)| *c != client)
                .copied();
        }
        woken.sort_unstable();
        woken
    }

    /// Applies held updates that became ready and drops entries now fully integrated; held
    /// updates that are ready only together (each fills another's hole) are merged and
    /// applied as one.
    fn settle(&mut self, txn: &mut TransactionMut) -> Result<(), UpdateError> {
        let mut sv = txn.state_vector();
        loop {
            let mut progressed = false;
            for seq in self.woken(&sv) {
                let entry = &self.entries[&seq];
                if let Some(gap) = entry.shape.first_gap(&sv) {
                    // Its next hole: wait again, for that clock.
                    let old = entry.waits.expect("woken entries are held");
                    self.waiting.remove(&(old.0, old.1, seq));
                    self.waiting.insert((gap.0, gap.1, seq));
                    self.entries.get_mut(&seq).expect("entry").waits = Some(gap);
                    continue;
                }
                let update =
                    Update::decode_v1(&entry.bytes).expect("held bytes decoded once already");
                self.unhold(seq);
                txn.apply_update(update)?;
                sv = txn.state_vector();
                progressed = true;
            }
            // Held entries are never dropped unapplied: one covered by the state vector is
            // ready too, so the pass above has applied it (its deletions included).
            let settled: Vec<u64> = self
                .applied
                .iter()
                .copied()
                .filter(|seq| self.entries[seq].shape.covered(&sv))
                .collect();
            for seq in settled {
                self.remove(seq);
            }
            if progressed {
                continue;
            }
            if self.composite == 0 || self.waiting.is_empty() {
                return Ok(());
            }
            let together = self.ready_together(&sv);
            if !self.needs_merge(&together, &sv) {
                return Ok(());
            }
            let merged = Update::merge_updates(together.iter().map(|seq| {
                Update::decode_v1(&self.entries[seq].bytes)
                    .expect("held bytes decoded once already")
            }));
            if Shape::of(&merged).first_gap(&sv).is_some() {
                return Ok(());
            }
            for &seq in &together {
                if self.entries[&seq].waits.is_some() {
                    self.unhold(seq);
                }
            }
            // Those pending inside yrs go in again: yrs skips what it has, and now has
            // what they waited for.
            txn.apply_update(merged)?;
            self.merges += 1;
            sv = txn.state_vector();
        }
    }

    /// True when merging `together` can free a held entry that waiting alone cannot: one that
    /// is composite itself, or whose next hole lies inside a composite entry. A held update
    /// whose hole a single-range update fills (held, or pending inside yrs for another
    /// client's block) is woken by the state vector once that one integrates; merging for
    /// it would only move it into yrs' pending set, and re-merge every waiting update on
    /// each arrival (a client thousands of updates ahead of another stalled a document so).
    fn needs_merge(&self, together: &[u64], sv: &StateVector) -> bool {
        let composites: Vec<&Shape> = together
            .iter()
            .map(|seq| &self.entries[seq].shape)
            .filter(|shape| shape.is_composite())
            .collect();
        together.iter().any(|seq| {
            let entry = &self.entries[seq];
            let Some((client, clock)) = entry.waits else {
                return false;
            };
            // Its hole: from what is integrated up to the clock it waits for.
            let hole = sv.get(&client)..clock;
            entry.shape.is_composite()
                || composites.iter().any(|shape| {
                    shape.inserts.iter().any(|(c, ranges)| {
                        *c == client
                            && ranges
                                .iter()
                                .any(|r| r.start < hole.end && r.end > hole.start)
                    })
                })
        })
    }

    /// The largest set of unsettled updates (held, or pending inside yrs) whose blocks, all
    /// together and after `sv`, leave no hole: start from all of them, drop those with a range
    /// beyond what the others and `sv` reach without a hole, until nothing more drops.
    fn ready_together(&self, sv: &StateVector) -> Vec<u64> {
        let mut set: Vec<u64> = self.entries.keys().copied().collect();
        loop {
            let mut union: BTreeMap<ClientID, Vec<Range<u32>>> = BTreeMap::new();
            for seq in &set {
                for (client, ranges) in &self.entries[seq].shape.inserts {
                    union
                        .entry(*client)
                        .or_default()
                        .extend(ranges.iter().cloned());
                }
            }
            let reach: BTreeMap<ClientID, u32> = union
                .into_iter()
                .map(|(client, mut ranges)| {
                    ranges.sort_by_key(|r| r.start);
                    let mut reach = sv.get(&client);
                    for r in ranges {
                        if r.start > reach {
                            break;
                        }
                        reach = reach.max(r.end);
                    }
                    (client, reach)
                })
                .collect();
            let before = set.len();
            set.retain(|seq| {
                self.entries[seq]
                    .shape
                    .inserts
                    .iter()
                    .all(|(client, ranges)| ranges.iter().all(|r| r.end <= reach[client]))
            });
            if set.len() == before {
                return set;
            }
        }
    }

    /// The updates not yet fully integrated, as they arrived: a peer syncing from this
    /// document needs them after its integrated state, to end up with everything received.
    pub fn unsettled(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.values().map(|e| e.bytes.as_slice())
    }

    /// [`Holdback::unsettled`] as few messages as is safe: up to `max_separate` are sent as
    /// they came; more are merged into one update (a queue of thousands would overflow a
    /// client's outbound queue), if yrs' merge verifiably keeps every block where it was:
    /// the same inserted and deleted clock ranges as the inputs (the misplacement this
    /// module exists for shows as a range that moved). Otherwise each as it came.
    pub fn unsettled_batched(&self, max_separate: usize) -> Vec<Vec<u8>> {
        let separate = || self.unsettled().map(<[u8]>::to_vec).collect();
        if self.entries.len() <= max_separate.max(1) {
            return separate();
        }
        let decoded = || {
            self.unsettled()
                .map(|b| Update::decode_v1(b).expect("held bytes decoded once already"))
        };
        let mut inserts = Ranges::default();
        let mut deletes = Ranges::default();
        for update in decoded() {
            inserts.add(&update.insertions(true));
            deletes.add(update.delete_set());
        }
        // Waiting updates may come from a hostile client, and yrs' merge can panic on crafted
        // input: then they go as they came.
        let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Update::merge_updates(decoded()).encode_v1()
        }));
        let Ok(encoded) = merged else {
            return separate();
        };
        let Ok(again) = Update::decode_v1(&encoded) else {
            return separate();
        };
        let mut merged_inserts = Ranges::default();
        let mut merged_deletes = Ranges::default();
        merged_inserts.add(&again.insertions(true));
        merged_deletes.add(again.delete_set());
        if merged_inserts.normalized() == inserts.normalized()
            && merged_deletes.normalized() == deletes.normalized()
        {
            vec![encoded]
        } else {
            separate()
        }
    }

    /// How many times waiting updates were merged and applied together: the costly
    /// fallback, meant for the rare bundles that wait on each other.
    pub fn merges(&self) -> u64 {
        self.merges
    }

    /// True when everything received is integrated.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Updates held back, not yet handed to yrs.
    pub fn held(&self) -> usize {
        self.entries.len() - self.applied.len()
    }

    /// For failure messages: each entry's state and what it inserts and reaches.
    pub fn describe(&self) -> String {
        self.entries
            .values()
            .map(|e| {
                format!(
                    "{} inserts {:?} reaches {:?}",
                    if e.waits.is_some() { "held" } else { "applied" },
                    e.shape.inserts,
                    e.shape.reach
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, Options, Text, Transact};

    fn doc(client: u64) -> Doc {
        Doc::with_options(Options {
            client_id: ClientID::new(client),
            skip_gc: true,
            ..Options::default()
        })
    }

    /// The updates `doc` emits while `edits` run, one per transaction.
    fn updates(doc: &Doc, edits: &[(u32, &str)]) -> Vec<Vec<u8>> {
        let text = doc.get_or_insert_text("t");
        edits
            .iter()
            .map(|(at, s)| {
                let mut txn = doc.transact_mut();
                text.insert(&mut txn, *at, s);
                txn.encode_update_v1()
            })
            .collect()
    }

    fn text(doc: &Doc) -> String {
        doc.get_or_insert_text("t").get_string(&doc.transact())
    }

    fn deliver(target: &Doc, hb: &mut Holdback, bytes: &[u8]) -> Delivery {
        let update = Update::decode_v1(bytes).unwrap();
        hb.apply(&mut target.transact_mut(), bytes, update).unwrap()
    }

    #[test]
    fn holds_an_update_until_its_clients_earlier_blocks_arrive() {
        let a = doc(1);
        // The second insert's origin is a block of the first; the third's is the start of the
        // text, so yrs alone would integrate it behind a hole.
        let u = updates(&a, &[(0, "ab"), (2, "cd"), (0, "X")]);
        let b = doc(2);
        let mut hb = Holdback::default();
        assert_eq!(deliver(&b, &mut hb, &u[2]), Delivery::Held);
        assert_eq!(deliver(&b, &mut hb, &u[1]), Delivery::Held);
        assert_eq!(hb.held(), 2);
        assert_eq!(text(&b), "");
        assert_eq!(hb.unsettled().count(), 2);
        assert_eq!(deliver(&b, &mut hb, &u[2]), Delivery::Duplicate);
        assert_eq!(deliver(&b, &mut hb, &u[0]), Delivery::Applied);
        assert!(hb.is_empty());
        assert_eq!(text(&b), text(&a));
        assert_eq!(
            b.transact().state_vector(),
            a.transact().state_vector(),
            "state vectors"
        );
    }

    #[test]
    fn keeps_updates_pending_on_another_client_until_they_integrate() {
        let a = doc(1);
        let c = doc(3);
        let ua = updates(&a, &[(0, "hello")]);
        c.transact_mut()
            .apply_update(Update::decode_v1(&ua[0]).unwrap())
            .unwrap();
        // c's edit depends on a's block: ready for c's clocks, pending inside yrs.
        let uc = updates(&c, &[(5, " world")]);
        let b = doc(2);
        let mut hb = Holdback::default();
        assert_eq!(deliver(&b, &mut hb, &uc[0]), Delivery::Applied);
        assert!(!hb.is_empty(), "pending in yrs: still unsettled");
        assert_eq!(hb.held(), 0);
        assert_eq!(deliver(&b, &mut hb, &ua[0]), Delivery::Applied);
        assert!(hb.is_empty());
        assert_eq!(text(&b), "hello world");
    }

    #[test]
    fn many_unsettled_updates_go_as_one_merged_update() {
        let a = doc(1);
        let edits: Vec<(u32, String)> = (0..50)
            .map(|i| (i, "x".repeat(1 + i as usize % 3)))
            .collect();
        let edits: Vec<(u32, &str)> = edits.iter().map(|(i, s)| (*i, s.as_str())).collect();
        let u = updates(&a, &edits);
        let b = doc(2);
        let mut hb = Holdback::default();
        for bytes in &u[1..] {
            assert_eq!(deliver(&b, &mut hb, bytes), Delivery::Held);
        }
        assert_eq!(
            hb.unsettled_batched(100).len(),
            49,
            "few enough: as they came"
        );
        let batched = hb.unsettled_batched(8);
        assert_eq!(batched.len(), 1, "many: merged");
        // A peer given the batch and then the missing first update ends where `a` is.
        let c = doc(3);
        let mut hc = Holdback::default();
        assert_eq!(deliver(&c, &mut hc, &batched[0]), Delivery::Held);
        assert_eq!(deliver(&c, &mut hc, &u[0]), Delivery::Applied);
        assert!(hc.is_empty());
        assert_eq!(text(&c), text(&a));
        assert_eq!(deliver(&b, &mut hb, &u[0]), Delivery::Applied);
        assert_eq!(text(&b), text(&a));
    }

    #[test]
    fn merges_held_updates_that_fill_each_others_holes() {
        // Two syncs that each carry one client's start and the other's continuation after a
        // hole: neither is ready alone, together they are.
        let x = doc(10);
        let y = doc(20);
        let ux = updates(&x, &[(0, "x1"), (0, "x2")]);
        let uy = updates(&y, &[(0, "y1"), (0, "y2")]);
        let first = yrs::merge_updates_v1([ux[0].as_slice(), uy[1].as_slice()]).unwrap();
        let second = yrs::merge_updates_v1([uy[0].as_slice(), ux[1].as_slice()]).unwrap();
        let b = doc(2);
        let mut hb = Holdback::default();
        assert_eq!(deliver(&b, &mut hb, &first), Delivery::Held);
        assert_eq!(deliver(&b, &mut hb, &second), Delivery::Held);
        assert!(hb.is_empty(), "merged and integrated");
        let reference = doc(3);
        for u in ux.iter().chain(&uy) {
            reference
                .transact_mut()
                .apply_update(Update::decode_v1(u).unwrap())
                .unwrap();
        }
        assert_eq!(text(&b), text(&reference));
        assert_eq!(text(&b).len(), 8);
    }
}
