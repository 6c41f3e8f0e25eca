//! Autocomplete: a word [`Trie`] with counts, and the [`WordIndex`] that keeps one in step with a
//! buffer as it is edited.
//!
//! # Words
//! A word is a maximal run of word chars: alphanumeric (`char::is_alphanumeric`, so letters and
//! digits of every script) or `'_'` — see [`is_word_char`]. Search's whole-word option uses the
//! same definition, so "complete this word" and "find this whole word" agree. Words are
//! case-sensitive (`Foo` and `foo` are two words) and are not normalised (NFC and NFD spellings
//! of `é` are two words).
//!
//! # Ranking
//! A word's score is its number of occurrences in the document, plus `keyword_base` if it is in
//! the fixed vocabulary (language keywords and the like, see [`Trie::add_keyword`]). A keyword
//! that also occurs in the document is one entry, not two. With the default base of 0 a keyword
//! absent from the document still completes, with score 0, after every document word that
//! matches. Completions are ordered by score, highest first, then alphabetically (by code point,
//! which is `String`'s order).
//!
//! # How top-k stays fast
//! Every node caches the best rank in its subtree (repeated in its parent's link to it), and
//! [`Trie::top_k`] runs a best-first search from the prefix node over a small binary heap keyed
//! by that cache. It opens only nodes whose subtree can still beat the k-th answer, and does not
//! even push a subtree whose best is below the k-th best key among the subtrees and words pushed
//! so far. Short prefixes head huge subtrees whose top words sit under wide, deep fan-outs, and
//! over a million words each opened node is a cache miss or two, so the root and the nodes one
//! to three chars deep also keep a list of their subtree's 24 best words: a query for k ≤ 12 at
//! such a node (or any k, when the subtree has fewer than 24 words) just copies the list out.
//!
//! Updates: a count change walks up the word's path once to raise or lower the cached bests (a
//! decrement stops at the first ancestor whose best is unchanged) and adjusts the word's entry
//! in at most four lists. A list is always a prefix of its subtree's completion order; a word
//! that falls behind a list's last entry leaves it (an unlisted word might now rank between),
//! and a list that shrinks below 12 entries is refilled by one best-first search, which needs at
//! least a dozen such decrements in between.
//!
//! # Memory
//! Nodes live in one arena (28 bytes each) and every node's children are a sorted run of
//! `(char, node, best)` links (12 bytes each) in a second shared arena, in power-of-two blocks
//! recycled through free lists; nodes of removed words are pruned and recycled too. See
//! [`Trie::memory_bytes`] and BENCHMARKS.md for the size of a million-word vocabulary.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Range;

use crate::buffer::{check_range, PosError, TextBuffer};

/// The one definition of "word char" shared by autocomplete and whole-word search.
///
/// # Examples
///
/// ```
/// use editor_core::trie::is_word_char;
///
/// assert!(is_word_char('a') && is_word_char('_') && is_word_char('9'));
/// assert!(is_word_char('é') && is_word_char('ж') && is_word_char('中'));
/// assert!(!is_word_char('-') && !is_word_char(' ') && !is_word_char('\''));
/// ```
#[inline]
pub fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        c.is_alphanumeric()
    }
}

const NIL: u32 = u32::MAX;
const ROOT: u32 = 0;
const NO_BLOCK: u8 = u8::MAX;
/// Nodes this deep (root = 0) keep a cached list of their subtree's best words.
const CACHE_DEPTH: usize = 3;
/// Length of those lists; a list is refilled when decrements leave it under half of this.
const CACHE_CAP: usize = 24;

#[derive(Debug, Clone)]
struct Node {
    parent: u32,
    ch: char,
    /// Offset of this node's children in `Trie::kids`.
    kids_at: u32,
    kids_len: u32,
    /// log2 of the children block's capacity, or `NO_BLOCK`.
    kids_cap_log: u8,
    keyword: bool,
    /// Occurrences in the document.
    count: u32,
    /// The best rank in this subtree (this node included); 0 when the subtree holds no word.
    best: u32,
}

impl Node {
    fn new(parent: u32, ch: char) -> Self {
        Node {
            parent,
            ch,
            kids_at: 0,
            kids_len: 0,
            kids_cap_log: NO_BLOCK,
            keyword: false,
            count: 0,
            best: 0,
        }
    }
}

/// Words with counts, answering "the k best completions of this prefix" without visiting every
/// word that has the prefix.
///
/// Invariants (see the module docs for why they keep top-k fast): a node's `best` is the best
/// rank in its subtree; a node's cached list, where it has one, is a prefix of its subtree's
/// completion order; `len()` counts the nodes that are a word (counted, or a keyword).
///
/// # Examples
///
/// ```
/// use editor_core::trie::Trie;
///
/// let mut trie = Trie::with_keyword_base(1);
/// for w in ["print", "println", "println", "private", "priority"] {
///     trie.insert(w);
/// }
/// trie.add_keyword("pub");
/// // Ranked by score, then alphabetically; keywords score their base plus their count.
/// assert_eq!(
///     trie.top_k("pr", 3),
///     [("println".to_string(), 2), ("print".to_string(), 1), ("priority".to_string(), 1)]
/// );
/// assert_eq!(trie.score("pub"), Some(1));
/// assert_eq!((trie.len(), trie.count("println")), (5, 2));
/// assert!(trie.remove("println"));
/// assert!(!trie.remove("absent"));
/// assert_eq!(trie.count("println"), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Trie {
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    kids: Vec<Kid>,
    /// Free children blocks, indexed by log2 of their capacity.
    free_blocks: Vec<Vec<u32>>,
    keyword_base: u32,
    words: usize,
    /// Best-words lists of the nodes at depth <= `CACHE_DEPTH`.
    caches: HashMap<u32, TopCache>,
    cache_cap: usize,
}

/// The best words of a subtree, as `(rank, node)` in completion order: always the first
/// `items.len()` words of that order, and all of them when `complete`.
#[derive(Debug, Clone)]
struct TopCache {
    items: Vec<(u32, u32)>,
    complete: bool,
}

impl TopCache {
    fn empty() -> Self {
        TopCache {
            items: Vec::new(),
            complete: true,
        }
    }
}

impl Default for Trie {
    fn default() -> Self {
        Trie::new()
    }
}

/// A child link. The child's cached best is repeated here so that a search deciding which
/// children to open reads one contiguous run instead of one scattered node per child (a million
/// words make a ~150 MB arena, where each of those reads would be a cache miss).
#[derive(Debug, Clone, Copy)]
struct Kid {
    ch: char,
    node: u32,
    best: u32,
}

/// One entry of the best-first heap: a whole subtree (`word == false`) or the word ending at
/// `node`, with `key` the subtree's best rank or the word's rank.
#[derive(Debug, Clone, Copy)]
struct Item {
    key: u32,
    node: u32,
    word: bool,
    /// The first `PACKED` chars of the path below the search's start node, one 21-bit slot each
    /// (char + 1, 0 = none), most significant first: comparing two of these as integers orders
    /// the paths alphabetically, shorter prefix first, unless both are longer than `PACKED` and
    /// agree on those chars. Ties in `key` are common (Zipf tails), and this settles most of them
    /// without walking parent links.
    path: u128,
    depth: u32,
}

const PACKED: u32 = 6;

/// The k largest keys seen, smallest first: `get` is a lower bound once k have been seen.
struct Floor {
    keys: Vec<u32>,
    k: usize,
}

impl Floor {
    fn new(k: usize) -> Self {
        Floor {
            keys: Vec::with_capacity(k.min(64) + 1),
            k,
        }
    }

    fn get(&self) -> u32 {
        if self.keys.len() < self.k {
            0
        } else {
            self.keys[0]
        }
    }

    fn add(&mut self, key: u32) {
        if self.keys.len() == self.k {
            if key <= self.keys[0] {
                return;
            }
            self.keys.remove(0);
        }
        let at = self.keys.partition_point(|&x| x < key);
        self.keys.insert(at, key);
    }
}

impl Item {
    fn child(&self, key: u32, node: u32, ch: char) -> Item {
        let depth = self.depth + 1;
        let path = if depth <= PACKED {
            self.path | (u128::from(ch as u32 + 1) << (128 - 21 * depth))
        } else {
            self.path
        };
        Item {
            key,
            node,
            word: false,
            path,
            depth,
        }
    }
}

impl Trie {
    /// An empty trie whose keywords score 0 beyond their document count.
    pub fn new() -> Self {
        Trie::with_keyword_base(0)
    }

    /// An empty trie whose keywords get `base` added to their document count, so a caller can
    /// decide whether keywords outrank rare document words.
    pub fn with_keyword_base(base: u32) -> Self {
        Trie {
            nodes: vec![Node::new(NIL, '\0')],
            free_nodes: Vec::new(),
            kids: Vec::new(),
            free_blocks: vec![Vec::new(); 33],
            keyword_base: base,
            words: 0,
            caches: HashMap::from([(ROOT, TopCache::empty())]),
            cache_cap: CACHE_CAP,
        }
    }

    #[cfg(test)]
    fn with_cache_cap(cap: usize) -> Self {
        Trie {
            cache_cap: cap.max(1),
            ..Trie::new()
        }
    }

    /// The bonus every keyword's score gets (see the module docs).
    pub fn keyword_base(&self) -> u32 {
        self.keyword_base
    }

    /// Number of distinct words that would be offered as completions (document words and
    /// keywords, each once).
    pub fn len(&self) -> usize {
        self.words
    }

    /// True when there is nothing to complete.
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// Approximate heap use in bytes, for capacity planning.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.nodes.capacity() * size_of::<Node>()
            + self.kids.capacity() * size_of::<Kid>()
            + self.free_nodes.capacity() * 4
            + self
                .free_blocks
                .iter()
                .map(|b| b.capacity() * 4)
                .sum::<usize>()
            + self.caches.capacity() * (size_of::<(u32, TopCache)>() + 8)
            + self
                .caches
                .values()
                .map(|c| c.items.capacity() * 8)
                .sum::<usize>()
    }

    /// Counts one occurrence of `word` (the empty word is ignored).
    pub fn insert(&mut self, word: &str) {
        self.add(word, 1);
    }

    /// Counts `n` occurrences of `word` at once, for bulk loading.
    pub fn add(&mut self, word: &str, n: u32) {
        if word.is_empty() || n == 0 {
            return;
        }
        let v = self.node_for_insert(word);
        let old = self.rank(v);
        if old == 0 {
            self.words += 1;
        }
        let node = &mut self.nodes[v as usize];
        node.count = node.count.saturating_add(n);
        self.raise(v);
        self.update_caches(self.shallow_ancestors(v), v, old, self.rank(v));
    }

    /// Marks `word` as part of the fixed vocabulary; it completes even when the document lacks
    /// it, and is deduplicated with the document's occurrences of it.
    pub fn add_keyword(&mut self, word: &str) {
        if word.is_empty() {
            return;
        }
        let v = self.node_for_insert(word);
        if self.nodes[v as usize].keyword {
            return;
        }
        let old = self.rank(v);
        if old == 0 {
            self.words += 1;
        }
        self.nodes[v as usize].keyword = true;
        self.raise(v);
        self.update_caches(self.shallow_ancestors(v), v, old, self.rank(v));
    }

    /// Forgets one occurrence of `word`; returns false (and changes nothing) if it had none.
    /// Keywords stay in the vocabulary when their count drops to zero.
    pub fn remove(&mut self, word: &str) -> bool {
        let Some(v) = self.find(word) else {
            return false;
        };
        if v == ROOT || self.nodes[v as usize].count == 0 {
            return false;
        }
        let old = self.rank(v);
        self.nodes[v as usize].count -= 1;
        if self.rank(v) == 0 {
            self.words -= 1;
        }
        // Ancestors first (`settle` may prune `v`), lists last (a refill needs settled bests).
        let shallow = self.shallow_ancestors(v);
        let new = self.rank(v);
        self.settle(v);
        self.update_caches(shallow, v, old, new);
        true
    }

    /// Occurrences of `word` counted so far (keywords' base not included).
    pub fn count(&self, word: &str) -> u32 {
        self.find(word).map_or(0, |v| self.nodes[v as usize].count)
    }

    /// The score `word` would be completed with, or `None` if it would not be offered.
    pub fn score(&self, word: &str) -> Option<u32> {
        let r = self
            .find(word)
            .map_or(0, |v| if v == ROOT { 0 } else { self.rank(v) });
        r.checked_sub(1)
    }

    /// The `k` best completions of `prefix` (the prefix itself included if it is a word), as
    /// `(word, score)`, by score descending, then alphabetically.
    pub fn top_k(&self, prefix: &str, k: usize) -> Vec<(String, u32)> {
        if k == 0 {
            return Vec::new();
        }
        let Some(start) = self.find(prefix) else {
            return Vec::new();
        };
        let best: Vec<(u32, u32)> = match self.caches.get(&start) {
            Some(c) if k <= c.items.len() || c.complete => {
                c.items.iter().take(k).copied().collect()
            }
            _ => self.best_first(start, k),
        };
        best.into_iter()
            .map(|(key, v)| (self.word_of(v), key - 1))
            .collect()
    }

    /// The `k` best words under `start` as `(rank, node)`, by best-first search.
    fn best_first(&self, start: u32, k: usize) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let best = self.nodes[start as usize].best;
        if best == 0 || k == 0 {
            return out;
        }
        // Every heap item guarantees a distinct word with its key (a subtree holds a word as good
        // as its cached best), so the k-th largest key among the items pushed so far (popped
        // subtrees excluded: one of their parts inherits their guarantee) bounds the k-th answer
        // from below, and subtrees whose best is under it need not be pushed at all.
        let mut floor = Floor::new(k);
        floor.add(best);
        let mut heap = Vec::with_capacity(64);
        let root = Item {
            key: best,
            node: start,
            word: false,
            path: 0,
            depth: 0,
        };
        self.heap_push(&mut heap, root);
        while let Some(item) = self.heap_pop(&mut heap) {
            if item.word {
                out.push((item.key, item.node));
                if out.len() == k {
                    break;
                }
                continue;
            }
            let mut inherited = false;
            let mut push = |heap: &mut Vec<Item>, floor: &mut Floor, new: Item| {
                if new.key < floor.get() {
                    return;
                }
                if !inherited && new.key == item.key {
                    inherited = true;
                } else {
                    floor.add(new.key);
                }
                self.heap_push(heap, new);
            };
            let r = if item.node == ROOT {
                0
            } else {
                self.rank(item.node)
            };
            if r > 0 {
                push(
                    &mut heap,
                    &mut floor,
                    Item {
                        key: r,
                        word: true,
                        ..item
                    },
                );
            }
            for kid in self.kids(item.node) {
                if kid.best > 0 {
                    push(
                        &mut heap,
                        &mut floor,
                        item.child(kid.best, kid.node, kid.ch),
                    );
                }
            }
        }
        out
    }

    /// `v` and its ancestors at depth <= `CACHE_DEPTH`: the nodes whose lists may hold `v`.
    fn shallow_ancestors(&self, v: u32) -> [u32; CACHE_DEPTH + 1] {
        let mut out = [NIL; CACHE_DEPTH + 1];
        let mut u = v;
        let mut d = self.depth(v);
        while d > CACHE_DEPTH {
            u = self.nodes[u as usize].parent;
            d -= 1;
        }
        for slot in out.iter_mut() {
            if u == NIL {
                break;
            }
            *slot = u;
            u = self.nodes[u as usize].parent;
        }
        out
    }

    /// Brings the best-words lists of `nodes` (from [`shallow_ancestors`](Self::shallow_ancestors))
    /// up to date after `v`'s rank changed from `old` to `new`. Cached bests must already be
    /// exact, since a refill searches by them.
    fn update_caches(&mut self, nodes: [u32; CACHE_DEPTH + 1], v: u32, old: u32, new: u32) {
        if new == old {
            return;
        }
        for u in nodes.into_iter().take_while(|&u| u != NIL) {
            let refill = match self.caches.get_mut(&u) {
                Some(cache) => {
                    cache_apply(&self.nodes, cache, v, old, new, self.cache_cap);
                    !cache.complete && cache.items.len() < self.cache_cap.div_ceil(2)
                }
                None => false, // pruned just now
            };
            if refill {
                let items = self.best_first(u, self.cache_cap);
                let complete = items.len() < self.cache_cap;
                self.caches.insert(u, TopCache { items, complete });
            }
        }
    }

    fn rank(&self, v: u32) -> u32 {
        let n = &self.nodes[v as usize];
        if n.count == 0 && !n.keyword {
            return 0;
        }
        let base = if n.keyword { self.keyword_base } else { 0 };
        n.count.saturating_add(base).saturating_add(1)
    }

    fn kids(&self, v: u32) -> &[Kid] {
        let n = &self.nodes[v as usize];
        let at = n.kids_at as usize;
        &self.kids[at..at + n.kids_len as usize]
    }

    fn child(&self, v: u32, c: char) -> Option<u32> {
        let kids = self.kids(v);
        kids.binary_search_by_key(&c, |e| e.ch)
            .ok()
            .map(|i| kids[i].node)
    }

    fn find(&self, word: &str) -> Option<u32> {
        let mut v = ROOT;
        for c in word.chars() {
            v = self.child(v, c)?;
        }
        Some(v)
    }

    fn node_for_insert(&mut self, word: &str) -> u32 {
        let mut v = ROOT;
        for c in word.chars() {
            v = self.add_child(v, c);
        }
        v
    }

    fn alloc_block(&mut self, log: u8) -> u32 {
        if let Some(at) = self.free_blocks[log as usize].pop() {
            return at;
        }
        let at = self.kids.len();
        self.kids.resize(
            at + (1usize << log),
            Kid {
                ch: '\0',
                node: NIL,
                best: 0,
            },
        );
        u32::try_from(at).expect("trie children arena exceeds u32")
    }

    /// The child of `v` for `c`, created if missing.
    fn add_child(&mut self, v: u32, c: char) -> u32 {
        let idx = match self.kids(v).binary_search_by_key(&c, |e| e.ch) {
            Ok(i) => return self.kids(v)[i].node,
            Err(i) => i,
        };
        let id = match self.free_nodes.pop() {
            Some(id) => {
                self.nodes[id as usize] = Node::new(v, c);
                id
            }
            None => {
                self.nodes.push(Node::new(v, c));
                u32::try_from(self.nodes.len() - 1).expect("trie exceeds u32 nodes")
            }
        };
        let n = &self.nodes[v as usize];
        let (len, log, old) = (n.kids_len as usize, n.kids_cap_log, n.kids_at as usize);
        let cap = if log == NO_BLOCK { 0 } else { 1usize << log };
        if len == cap {
            let new_log = if log == NO_BLOCK { 0 } else { log + 1 };
            let at = self.alloc_block(new_log);
            self.kids.copy_within(old..old + len, at as usize);
            if log != NO_BLOCK {
                self.free_blocks[log as usize].push(old as u32);
            }
            let n = &mut self.nodes[v as usize];
            n.kids_at = at;
            n.kids_cap_log = new_log;
        }
        let at = self.nodes[v as usize].kids_at as usize;
        self.kids.copy_within(at + idx..at + len, at + idx + 1);
        self.kids[at + idx] = Kid {
            ch: c,
            node: id,
            best: 0,
        };
        self.nodes[v as usize].kids_len += 1;
        if self.is_shallow(id) {
            self.caches.insert(id, TopCache::empty());
        }
        id
    }

    fn remove_child(&mut self, v: u32, c: char) {
        let Ok(idx) = self.kids(v).binary_search_by_key(&c, |e| e.ch) else {
            return;
        };
        let n = &self.nodes[v as usize];
        let (at, len) = (n.kids_at as usize, n.kids_len as usize);
        self.kids.copy_within(at + idx + 1..at + len, at + idx);
        let n = &mut self.nodes[v as usize];
        n.kids_len -= 1;
        if n.kids_len == 0 {
            let log = n.kids_cap_log;
            n.kids_cap_log = NO_BLOCK;
            n.kids_at = 0;
            self.free_blocks[log as usize].push(at as u32);
        }
    }

    /// Sets `u`'s cached best, in the node and in its parent's link to it.
    fn set_best(&mut self, u: u32, best: u32) {
        let n = &mut self.nodes[u as usize];
        n.best = best;
        let (parent, ch) = (n.parent, n.ch);
        if parent == NIL {
            return;
        }
        let p = &self.nodes[parent as usize];
        let at = p.kids_at as usize;
        let kids = &mut self.kids[at..at + p.kids_len as usize];
        if let Ok(i) = kids.binary_search_by_key(&ch, |e| e.ch) {
            kids[i].best = best;
        }
    }

    /// Propagates a rank increase at `v` to its ancestors' cached best.
    fn raise(&mut self, v: u32) {
        let r = self.rank(v);
        let mut u = v;
        while u != NIL {
            if self.nodes[u as usize].best >= r {
                break;
            }
            self.set_best(u, r);
            u = self.nodes[u as usize].parent;
        }
    }

    /// Propagates a rank decrease at `v`: prunes nodes left without words and recomputes cached
    /// bests until one is unchanged.
    fn settle(&mut self, v: u32) {
        let mut u = v;
        loop {
            let n = &self.nodes[u as usize];
            let parent = n.parent;
            if u != ROOT && n.kids_len == 0 && n.count == 0 && !n.keyword {
                let ch = n.ch;
                self.remove_child(parent, ch);
                self.free_nodes.push(u);
                self.caches.remove(&u);
                u = parent;
                continue;
            }
            let own = if u == ROOT { 0 } else { self.rank(u) };
            let best = self.kids(u).iter().map(|k| k.best).fold(own, u32::max);
            if best == self.nodes[u as usize].best {
                break;
            }
            self.set_best(u, best);
            if u == ROOT {
                break;
            }
            u = parent;
        }
    }

    fn word_of(&self, v: u32) -> String {
        let mut chars = Vec::new();
        let mut u = v;
        while u != ROOT {
            chars.push(self.nodes[u as usize].ch);
            u = self.nodes[u as usize].parent;
        }
        chars.iter().rev().collect()
    }

    /// Whether `v` is at most `CACHE_DEPTH` below the root.
    fn is_shallow(&self, v: u32) -> bool {
        let mut u = v;
        for _ in 0..CACHE_DEPTH {
            if u == ROOT {
                return true;
            }
            u = self.nodes[u as usize].parent;
        }
        u == ROOT
    }

    /// Checks every best-words list against a fresh best-first search, and every link's copy of
    /// its child's best.
    #[cfg(test)]
    fn check_caches(&self) {
        let mut stack = vec![ROOT];
        while let Some(v) = stack.pop() {
            for k in self.kids(v) {
                assert_eq!(
                    k.best, self.nodes[k.node as usize].best,
                    "link to node {}",
                    k.node
                );
                assert_eq!(self.nodes[k.node as usize].parent, v);
                stack.push(k.node);
            }
        }
        for (&v, c) in &self.caches {
            assert!(self.is_shallow(v));
            let fresh = self.best_first(v, c.items.len() + 1);
            if c.complete {
                assert_eq!(c.items, fresh, "complete cache of node {v}");
            } else {
                assert_eq!(c.items, fresh[..c.items.len()], "cache of node {v}");
            }
        }
    }

    fn depth(&self, v: u32) -> usize {
        let mut d = 0;
        let mut u = v;
        while u != ROOT {
            d += 1;
            u = self.nodes[u as usize].parent;
        }
        d
    }

    /// True if `a` must come out of the heap before `b`: higher key, then smaller path, then a
    /// word before the subtree below it.
    fn before(&self, a: &Item, b: &Item) -> bool {
        if a.key != b.key {
            return a.key > b.key;
        }
        if a.node == b.node {
            return a.word && !b.word;
        }
        if a.path != b.path {
            return a.path < b.path;
        }
        cmp_paths(&self.nodes, a.node, b.node).is_lt()
    }

    fn heap_push(&self, heap: &mut Vec<Item>, item: Item) {
        heap.push(item);
        let mut i = heap.len() - 1;
        while i > 0 {
            let p = (i - 1) / 2;
            if !self.before(&heap[i], &heap[p]) {
                break;
            }
            heap.swap(i, p);
            i = p;
        }
    }

    fn heap_pop(&self, heap: &mut Vec<Item>) -> Option<Item> {
        if heap.is_empty() {
            return None;
        }
        let top = heap.swap_remove(0);
        let len = heap.len();
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            if l >= len {
                break;
            }
            let c = if l + 1 < len && self.before(&heap[l + 1], &heap[l]) {
                l + 1
            } else {
                l
            };
            if !self.before(&heap[c], &heap[i]) {
                break;
            }
            heap.swap(c, i);
            i = c;
        }
        Some(top)
    }
}

/// Lexicographic order of the words spelled by the paths to `a` and `b`.
fn cmp_paths(nodes: &[Node], a: u32, b: u32) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let depth = |v: u32| {
        let (mut d, mut u) = (0, v);
        while u != ROOT {
            d += 1;
            u = nodes[u as usize].parent;
        }
        d
    };
    let (mut da, mut db) = (depth(a), depth(b));
    let (mut x, mut y) = (a, b);
    while da > db {
        x = nodes[x as usize].parent;
        da -= 1;
    }
    if x == y {
        return Ordering::Greater; // b is a proper prefix of a
    }
    while db > da {
        y = nodes[y as usize].parent;
        db -= 1;
    }
    if x == y {
        return Ordering::Less; // a is a proper prefix of b
    }
    while nodes[x as usize].parent != nodes[y as usize].parent {
        x = nodes[x as usize].parent;
        y = nodes[y as usize].parent;
    }
    nodes[x as usize].ch.cmp(&nodes[y as usize].ch)
}

/// Moves word `v` (rank `old` -> `new`) within one best-words list, keeping the invariant that the
/// list is a prefix of its subtree's completion order: a word that falls behind the list's last
/// entry leaves the list unless the list is complete, since unlisted words might now rank between.
fn cache_apply(nodes: &[Node], cache: &mut TopCache, v: u32, old: u32, new: u32, cap: usize) {
    let ahead = |a: (u32, u32), b: (u32, u32)| {
        a.0 > b.0 || (a.0 == b.0 && cmp_paths(nodes, a.1, b.1).is_lt())
    };
    let listed = cache.items.iter().position(|&(_, n)| n == v);
    if let Some(i) = listed {
        cache.items.remove(i);
    }
    if new == 0 {
        return;
    }
    let item = (new, v);
    let p = cache.items.partition_point(|&x| ahead(x, item));
    let rose_in_list = listed.is_some() && new > old;
    if p == cache.items.len() && !cache.complete && !rose_in_list {
        return;
    }
    cache.items.insert(p, item);
    if cache.items.len() > cap {
        cache.items.pop();
        cache.complete = false;
    }
}

/// A buffer's words in a [`Trie`], updated per edit by re-reading only the words around the
/// edit, so a keystroke costs the same in a 10 MB document as in a 10-line one.
///
/// Protocol: call [`before_edit`](Self::before_edit) with the char range about to be removed
/// (empty for a pure insert) while the buffer still holds the old text, edit the buffer, then
/// call [`after_edit`](Self::after_edit) with the char range the inserted text now occupies
/// (empty for a pure delete). Both extend their range to the enclosing word boundaries — the
/// chars just outside the range are unchanged by the edit, so both calls see the same region —
/// and the first forgets that region's words while the second counts them again.
/// [`apply_edit`](Self::apply_edit) does all three steps.
///
/// Invariant: between edits, the trie counts exactly the words of the buffer (plus the
/// keywords), as [`WordIndex::build`] on the current text would.
///
/// # Examples
///
/// ```
/// use editor_core::trie::WordIndex;
/// use editor_core::{GapBuffer, TextBuffer};
///
/// let mut buf = GapBuffer::from_text("alpha beta alpha");
/// let mut index = WordIndex::build(&buf);
/// assert_eq!(index.top_k("al", 5), [("alpha".to_string(), 2)]);
/// // Typing into the middle of a word replaces that word in the index.
/// index.apply_edit(&mut buf, 6..6, "al").unwrap();
/// assert_eq!(buf.to_text(), "alpha albeta alpha");
/// assert_eq!((index.count("beta"), index.count("albeta")), (0, 1));
/// assert_eq!(index.top_k("al", 5), [("alpha".to_string(), 2), ("albeta".to_string(), 1)]);
/// assert_eq!(index.trie().len(), WordIndex::build(&buf).trie().len());
/// ```
#[derive(Debug, Clone, Default)]
pub struct WordIndex {
    trie: Trie,
    scratch: String,
}

impl WordIndex {
    /// An empty index, for a buffer indexed later with [`index_buffer`](Self::index_buffer).
    pub fn new() -> Self {
        WordIndex::default()
    }

    /// An empty index with a fixed vocabulary merged into completions (see the module docs for
    /// how `base` ranks keywords).
    pub fn with_keywords<I, S>(keywords: I, base: u32) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut trie = Trie::with_keyword_base(base);
        for k in keywords {
            trie.add_keyword(k.as_ref());
        }
        WordIndex {
            trie,
            scratch: String::new(),
        }
    }

    /// The index of every word in `buf`.
    pub fn build<B: TextBuffer>(buf: &B) -> Self {
        let mut index = WordIndex::new();
        index.index_buffer(buf);
        index
    }

    /// Counts every word of `buf` (on top of whatever is indexed already).
    pub fn index_buffer<B: TextBuffer>(&mut self, buf: &B) {
        let trie = &mut self.trie;
        for_each_word(buf.chunks(), &mut self.scratch, |w| trie.insert(w));
    }

    /// Forgets the words that `removed` (a char range of the current text, about to be removed
    /// or replaced) touches. Call before editing the buffer.
    pub fn before_edit<B: TextBuffer>(
        &mut self,
        buf: &B,
        removed: Range<usize>,
    ) -> Result<(), PosError> {
        let region = word_region(buf, removed)?;
        let trie = &mut self.trie;
        for_each_word(buf.chunks_in(region)?, &mut self.scratch, |w| {
            trie.remove(w);
        });
        Ok(())
    }

    /// Counts the words that `inserted` (the char range the new text occupies, possibly empty)
    /// touches. Call after editing the buffer.
    pub fn after_edit<B: TextBuffer>(
        &mut self,
        buf: &B,
        inserted: Range<usize>,
    ) -> Result<(), PosError> {
        let region = word_region(buf, inserted)?;
        let trie = &mut self.trie;
        for_each_word(buf.chunks_in(region)?, &mut self.scratch, |w| {
            trie.insert(w)
        });
        Ok(())
    }

    /// Replaces `range` of `buf` by `text` and updates the index; on error neither changes.
    pub fn apply_edit<B: TextBuffer>(
        &mut self,
        buf: &mut B,
        range: Range<usize>,
        text: &str,
    ) -> Result<(), PosError> {
        check_range(&range, buf.len_chars())?;
        self.before_edit(buf, range.clone())?;
        if let Err(e) = buf.replace(range.clone(), text) {
            self.after_edit(buf, range)?;
            return Err(e);
        }
        let end = range.start + text.chars().count();
        self.after_edit(buf, range.start..end)
    }

    /// The `k` best completions of `prefix`; see [`Trie::top_k`].
    pub fn top_k(&self, prefix: &str, k: usize) -> Vec<(String, u32)> {
        self.trie.top_k(prefix, k)
    }

    /// Occurrences of `word` in the document.
    pub fn count(&self, word: &str) -> u32 {
        self.trie.count(word)
    }

    /// The underlying trie, for read-only queries.
    pub fn trie(&self) -> &Trie {
        &self.trie
    }
}

/// Calls `f` for every word in the concatenation of `chunks`, words spanning chunks included.
fn for_each_word<'a>(
    chunks: impl Iterator<Item = &'a str>,
    scratch: &mut String,
    mut f: impl FnMut(&str),
) {
    scratch.clear();
    for chunk in chunks {
        let mut word_start: Option<usize> = None;
        for (i, c) in chunk.char_indices() {
            if is_word_char(c) {
                if word_start.is_none() {
                    word_start = Some(i);
                }
            } else if let Some(s) = word_start.take() {
                if scratch.is_empty() {
                    f(&chunk[s..i]);
                } else {
                    scratch.push_str(&chunk[s..i]);
                    f(scratch);
                    scratch.clear();
                }
            } else if !scratch.is_empty() {
                f(scratch);
                scratch.clear();
            }
        }
        if let Some(s) = word_start {
            scratch.push_str(&chunk[s..]);
        }
    }
    if !scratch.is_empty() {
        f(scratch);
        scratch.clear();
    }
}

/// `range` extended outwards over adjacent word chars, so it starts and ends on word boundaries.
fn word_region<B: TextBuffer>(buf: &B, range: Range<usize>) -> Result<Range<usize>, PosError> {
    let len = buf.len_chars();
    check_range(&range, len)?;
    let mut window = 16;
    let start = loop {
        let lo = range.start.saturating_sub(window);
        let mut run = 0;
        for chunk in buf.chunks_in(lo..range.start)? {
            for c in chunk.chars() {
                run = if is_word_char(c) { run + 1 } else { 0 };
            }
        }
        if run < range.start - lo || lo == 0 {
            break range.start - run;
        }
        window *= 4;
    };
    let mut window = 16;
    let end = loop {
        let hi = range.end.saturating_add(window).min(len);
        let mut run = 0;
        'scan: for chunk in buf.chunks_in(range.end..hi)? {
            for c in chunk.chars() {
                if !is_word_char(c) {
                    break 'scan;
                }
                run += 1;
            }
        }
        if run < hi - range.end || hi == len {
            break range.end + run;
        }
        window *= 4;
    };
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::testing::ChunkyBuffer;
    use crate::{GapBuffer, RopeBuffer};

    fn words_of(text: &str) -> HashMap<String, u32> {
        let mut m = HashMap::new();
        for w in text
            .split(|c: char| !is_word_char(c))
            .filter(|w| !w.is_empty())
        {
            *m.entry(w.to_string()).or_insert(0) += 1;
        }
        m
    }

    fn brute_top_k(scores: &HashMap<String, u32>, prefix: &str, k: usize) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = scores
            .iter()
            .filter(|(w, _)| w.starts_with(prefix))
            .map(|(w, &s)| (w.clone(), s))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }

    #[test]
    fn word_chars() {
        assert!(is_word_char('a') && is_word_char('_') && is_word_char('9') && is_word_char('é'));
        assert!(is_word_char('日') && is_word_char('٣'));
        assert!(
            !is_word_char(' ')
                && !is_word_char('-')
                && !is_word_char('🎉')
                && !is_word_char('\u{301}')
        );
    }

    #[test]
    fn top_k_orders_by_count_then_alphabet() {
        let mut t = Trie::new();
        for (w, n) in [
            ("the", 5),
            ("then", 2),
            ("there", 2),
            ("they", 3),
            ("a", 9),
            ("th", 1),
        ] {
            t.add(w, n);
        }
        assert_eq!(
            t.top_k("th", 10),
            vec![
                ("the".to_string(), 5),
                ("they".to_string(), 3),
                ("then".to_string(), 2),
                ("there".to_string(), 2),
                ("th".to_string(), 1),
            ]
        );
        assert_eq!(t.top_k("th", 2).len(), 2);
        assert_eq!(t.top_k("", 1), vec![("a".to_string(), 9)]);
        assert!(t.top_k("x", 3).is_empty());
        assert!(t.top_k("th", 0).is_empty());
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn remove_prunes_and_updates_best() {
        let mut t = Trie::new();
        t.add("alpha", 3);
        t.insert("alps");
        assert!(t.remove("alpha"));
        assert_eq!(t.count("alpha"), 2);
        t.remove("alpha");
        t.remove("alpha");
        assert!(!t.remove("alpha"));
        assert!(!t.remove("al"));
        assert_eq!(t.top_k("al", 5), vec![("alps".to_string(), 1)]);
        assert_eq!(t.len(), 1);
        t.remove("alps");
        assert!(t.is_empty());
        assert!(t.top_k("", 5).is_empty());
        // Everything was pruned: only the root is live, the rest is on the free list.
        assert_eq!(t.nodes.len() - t.free_nodes.len(), 1);
        t.insert("beta");
        assert_eq!(t.top_k("b", 1), vec![("beta".to_string(), 1)]);
    }

    #[test]
    fn keywords_merge_with_document_words() {
        let mut index = WordIndex::with_keywords(["fn", "for", "format"], 0);
        index.index_buffer(&RopeBuffer::from_text("for x in foo { foo(); for_each }"));
        assert_eq!(
            index.top_k("f", 10),
            vec![
                ("foo".to_string(), 2),
                ("for".to_string(), 1),
                ("for_each".to_string(), 1),
                ("fn".to_string(), 0),
                ("format".to_string(), 0),
            ]
        );
        let boosted = WordIndex::with_keywords(["fn"], 10);
        assert_eq!(boosted.top_k("f", 1), vec![("fn".to_string(), 10)]);
        assert_eq!(boosted.trie().score("fn"), Some(10));
        assert_eq!(boosted.trie().score("f"), None);
    }

    #[test]
    fn index_follows_edits() {
        let mut buf = RopeBuffer::from_text("hello world, hello");
        let mut index = WordIndex::build(&buf);
        assert_eq!(index.count("hello"), 2);
        index.apply_edit(&mut buf, 5..5, "x").unwrap(); // "hellox world, hello"
        assert_eq!((index.count("hello"), index.count("hellox")), (1, 1));
        index.apply_edit(&mut buf, 6..7, "").unwrap(); // "helloxworld, hello"
        assert_eq!((index.count("helloxworld"), index.count("world")), (1, 0));
        index.apply_edit(&mut buf, 0..11, "a b").unwrap(); // "a b, hello"
        assert_eq!(words_of(&buf.to_text()).len(), index.trie().len());
        assert_eq!(
            index.count("a") + index.count("b") + index.count("hello"),
            3
        );
        assert!(index.apply_edit(&mut buf, 3..99, "").is_err());
        assert_eq!(index.count("hello"), 1);
    }

    #[test]
    fn undo_and_replace_all_keep_the_index_in_step() {
        use crate::search::{replace_all_with, Query};
        use crate::undo::{Edit, History};
        let mut buf = GapBuffer::from_text("alpha beta alpha");
        let mut index = WordIndex::build(&buf);
        let mut h = History::new();
        let edit = Edit {
            pos: 6,
            deleted: buf.slice(6..10).unwrap(),
            inserted: "gamma".into(),
        };
        index.apply_edit(&mut buf, 6..10, "gamma").unwrap();
        h.record(edit);
        let s = Query::new("alpha").whole_word(true).compile();
        let n = replace_all_with(&mut buf, &s, "delta", &mut h, |b, r, t| {
            index.apply_edit(b, r, t)
        })
        .unwrap();
        assert_eq!((n, buf.to_text().as_str()), (2, "delta gamma delta"));
        assert_eq!((index.count("alpha"), index.count("delta")), (0, 2));
        h.undo_with(&mut buf, |b, r, t| index.apply_edit(b, r, t))
            .unwrap();
        h.undo_with(&mut buf, |b, r, t| index.apply_edit(b, r, t))
            .unwrap();
        assert_eq!(buf.to_text(), "alpha beta alpha");
        assert_eq!(
            (
                index.count("alpha"),
                index.count("beta"),
                index.count("gamma")
            ),
            (2, 1, 0)
        );
        h.redo_with(&mut buf, |b, r, t| index.apply_edit(b, r, t))
            .unwrap();
        assert_eq!((index.count("beta"), index.count("gamma")), (0, 1));
    }

    #[test]
    fn long_words_extend_the_window() {
        let long = "w".repeat(1000);
        let text = format!("a {long} b");
        let mut buf = ChunkyBuffer::with_chunking(&text, 7, 3);
        let mut index = WordIndex::build(&buf);
        index.apply_edit(&mut buf, 500..501, "-").unwrap();
        // The w's were chars 2..1002; char 500 became '-'.
        assert_eq!(index.count(&"w".repeat(498)), 1);
        assert_eq!(index.count(&"w".repeat(501)), 1);
        assert_eq!(index.count(&long), 0);
    }

    fn edit_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("a"),
                Just("b"),
                Just("ab"),
                Just("é"),
                Just("日"),
                Just("_"),
                Just("1"),
                Just(" "),
                Just("\n"),
                Just("-"),
                Just("🎉"),
                Just("\u{301}"),
            ],
            0..6,
        )
        .prop_map(|v| v.concat())
    }

    fn check_index<B: TextBuffer>(
        mut buf: B,
        edits: &[(usize, usize, String)],
        prefixes: &[String],
    ) -> Result<(), TestCaseError> {
        let keywords = ["ab", "for", "日本"];
        let mut index = WordIndex::with_keywords(keywords, 2);
        index.index_buffer(&buf);
        for (a, b, text) in edits {
            let len = buf.len_chars();
            let (s, e) = (a % (len + 1), b % (len + 1));
            let (s, e) = (s.min(e), s.max(e).min(s + 4));
            index.apply_edit(&mut buf, s..e, text).unwrap();
            let words = words_of(&buf.to_text());
            let mut scores: HashMap<String, u32> =
                words.iter().map(|(w, &c)| (w.clone(), c)).collect();
            for k in keywords {
                *scores.entry(k.to_string()).or_insert(0) += 2;
            }
            prop_assert_eq!(index.trie().len(), scores.len());
            for (w, c) in &words {
                prop_assert_eq!(index.count(w), *c, "count of {:?}", w);
            }
            for p in prefixes {
                prop_assert_eq!(index.top_k(p, 3), brute_top_k(&scores, p, 3));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn trie_matches_brute_force(
            // Short words exercise the lists; long ones (ties past the packed 6-char paths) the
            // fallback comparison.
            ops in proptest::collection::vec((any::<bool>(), "[abc日]{1,3}|[ab]{6,9}"), 0..150),
            prefixes in proptest::collection::vec("[abc日]{0,2}|[ab]{3,7}", 1..4),
            k in 0usize..8,
            cap in 1usize..6,
        ) {
            let mut t = Trie::with_cache_cap(cap);
            let mut model: HashMap<String, u32> = HashMap::new();
            for (add, w) in &ops {
                if *add {
                    t.insert(w);
                    *model.entry(w.clone()).or_insert(0) += 1;
                } else {
                    let had = model.get(w).copied().unwrap_or(0) > 0;
                    prop_assert_eq!(t.remove(w), had);
                    if had {
                        *model.get_mut(w).unwrap() -= 1;
                    }
                }
            }
            model.retain(|_, c| *c > 0);
            prop_assert_eq!(t.len(), model.len());
            for (w, c) in &model {
                prop_assert_eq!(t.count(w), *c);
            }
            for p in &prefixes {
                prop_assert_eq!(t.top_k(p, k), brute_top_k(&model, p, k));
            }
            t.check_caches();
        }

        #[test]
        fn index_matches_fresh_scan(
            initial in edit_text(),
            edits in proptest::collection::vec((any::<usize>(), any::<usize>(), edit_text()), 1..25),
            prefixes in proptest::collection::vec("[ab日]{0,2}", 1..3),
            max_chunk in 1usize..5,
        ) {
            check_index(ChunkyBuffer::with_chunking(&initial, max_chunk, 7), &edits, &prefixes)?;
            check_index(RopeBuffer::from_text(&initial), &edits, &prefixes)?;
            check_index(GapBuffer::from_text(&initial), &edits, &prefixes)?;
        }
    }
}
