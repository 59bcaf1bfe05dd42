//! quiesce's own search engine over the same `stateright::Model`.
//!
//! Stateright's checker spends most of its time in its visited set (a DashMap
//! of fingerprints), in per-state path vectors and in looking properties up
//! by name. This engine keeps the model, its actions, `next_state` and its
//! properties exactly as they are, and changes only the search:
//!
//! - states have no heap inside (`Fixed` lists), so a successor is a copy;
//! - the visited set is a flat table of 64-bit fingerprints of the packed
//!   state (`encode`), shared by the threads without locks (`table`);
//! - breadth-first by layers, keeping only the current and next layer (no
//!   path per state); a property's first discovery is at its least depth;
//! - each property is a plain function called once per state, and
//!   `no_deadlock` comes from the action count the search already has;
//! - symmetry packs the submitters' groups in sorted order, with no allocation;
//! - a memory limit ends the run with a clear message; a stop request (Ctrl-C)
//!   ends it at the next batch; either result is marked incomplete.
//!
//! Fingerprints make the visited set probabilistic, like Stateright's: two
//! states with the same 64-bit fingerprint count as one. [`Outcome::collision_probability`]
//! bounds that chance.

mod encode;
mod table;

use crate::model::{Action, Quiesce, State};
use stateright::{Expectation, Model};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::Instant;
pub use table::Table;

/// Set to end a running search at its next batch (the CLI's Ctrl-C handler does).
pub static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone)]
pub struct Options {
    pub symmetry: bool,
    pub threads: usize,
    pub order: Order,
    /// End the search when the visited set and layers would pass this many bytes.
    pub mem_limit: usize,
    /// Preallocate the visited set for this many bytes (a power of two at most;
    /// 0: start at 8 MiB and grow). A table sized for the run never holds its
    /// old and new copy at once while it grows.
    pub table_bytes: usize,
}

/// Why a search ended before it covered every state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incomplete {
    MemoryLimit { limit: usize },
    Stopped,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incomplete::MemoryLimit { limit } => write!(
                f,
                "stopped at the memory limit ({} MiB): the result covers only the states searched",
                limit >> 20
            ),
            Incomplete::Stopped => {
                f.write_str("interrupted: the result covers only the states searched")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub unique_states: usize,
    /// Successors generated (each transition once).
    pub states: usize,
    /// Layers searched: the greatest depth, counting the initial states as 1.
    pub max_depth: usize,
    /// Names of the properties discovered (violated `always`, reached `sometimes`).
    pub discovered: Vec<&'static str>,
    pub incomplete: Option<Incomplete>,
    /// Bytes of the visited set at the end.
    pub table_bytes: usize,
}

impl Outcome {
    /// The chance that two distinct states shared a 64-bit fingerprint (and one
    /// was not searched): about n² / 2⁶⁵.
    pub fn collision_probability(&self) -> f64 {
        let n = self.unique_states as f64;
        n * n / 2f64.powi(65)
    }
}

/// Figures while the search runs.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub states: usize,
    /// States whose successors have been generated.
    pub expanded: usize,
    pub depth: usize,
    pub seconds: f64,
}

/// States a worker takes from the layer at a time.
const BATCH: usize = 256;

fn fingerprint(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes).max(1)
}

/// The fingerprint of a state as it is (no symmetry).
pub(crate) fn state_fingerprint(s: &State) -> u64 {
    let mut buf = [0u8; encode::MAX];
    let n = encode::encode(s, false, &mut buf);
    fingerprint(&buf[..n])
}

/// The shared state of one search.
struct Search<'a, const N: usize> {
    model: &'a Quiesce<N>,
    opts: &'a Options,
    table: RwLock<Table>,
    /// The properties, in the model's order, and which are found.
    props: Vec<stateright::Property<Quiesce<N>>>,
    found: Vec<AtomicBool>,
    left: AtomicUsize,
    transitions: AtomicUsize,
    expanded: AtomicUsize,
    incomplete: Mutex<Option<Incomplete>>,
}

impl<const N: usize> Search<'_, N> {
    /// Evaluate every property not yet found on `s`, which has `n_actions` actions.
    fn check(&self, s: &State<N>, n_actions: usize) {
        for (i, p) in self.props.iter().enumerate() {
            if self.found[i].load(Ordering::Relaxed) {
                continue;
            }
            let holds = if p.name == "no_deadlock" {
                self.model.all_done(s) || n_actions > 0
            } else {
                (p.condition)(self.model, s)
            };
            let discovered = match p.expectation {
                Expectation::Always => !holds,
                Expectation::Sometimes => holds,
                Expectation::Eventually => false,
            };
            if discovered && !self.found[i].swap(true, Ordering::Relaxed) {
                self.left.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn stop(&self, why: Incomplete) {
        self.incomplete.lock().unwrap().get_or_insert(why);
    }

    fn stopped(&self) -> bool {
        STOP.load(Ordering::Relaxed) || self.incomplete.lock().unwrap().is_some()
    }

    /// Expand a batch of states into `scratch.succ`: each successor is
    /// written where it is kept, packed and fingerprinted, and its table slot
    /// prefetched, before any is inserted ([`Self::keep_new`]), so the probes'
    /// cache misses overlap.
    fn expand<'s>(&self, batch: impl Iterator<Item = &'s State<N>>, scratch: &mut Scratch<N>) {
        let mut buf = [0u8; encode::MAX];
        let table = self.table.read().unwrap();
        scratch.succ.clear();
        let mut expanded = 0;
        for s in batch {
            expanded += 1;
            scratch.acts.clear();
            self.model.actions(s, &mut scratch.acts);
            self.check(s, scratch.acts.len());
            for &a in &scratch.acts {
                scratch.succ.push((s.clone(), 0));
                let (n, fp) = scratch.succ.last_mut().expect("just pushed");
                self.model.apply(n, a);
                let len = encode::encode(n, self.opts.symmetry, &mut buf);
                *fp = fingerprint(&buf[..len]);
                table.prefetch(*fp);
            }
        }
        scratch.transitions += scratch.succ.len();
        scratch.expanded += expanded;
        if scratch.expanded >= FLUSH {
            self.flush(scratch);
        }
    }

    /// Insert the successors [`Self::expand`] made; `keep` each new one.
    fn keep_new(&self, scratch: &mut Scratch<N>, mut keep: impl FnMut(State<N>)) {
        let table = self.table.read().unwrap();
        for (n, fp) in scratch.succ.drain(..) {
            if table.insert(fp) {
                keep(n);
            }
        }
    }
}

/// A worker adds its counts to the shared ones after this many expansions (and
/// when it ends), so that the threads do not contend for them every batch.
const FLUSH: usize = 4096;

/// A worker's reusable buffers, and its counts not yet added to the search's.
#[derive(Default)]
struct Scratch<const N: usize> {
    acts: Vec<Action>,
    succ: Vec<(State<N>, u64)>,
    transitions: usize,
    expanded: usize,
}

impl<const N: usize> Search<'_, N> {
    fn flush(&self, scratch: &mut Scratch<N>) {
        self.transitions
            .fetch_add(std::mem::take(&mut scratch.transitions), Ordering::Relaxed);
        self.expanded
            .fetch_add(std::mem::take(&mut scratch.expanded), Ordering::Relaxed);
    }
}

/// The order of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Depth first, the threads sharing work: memory is the visited set alone.
    Dfs,
    /// Breadth first by layers: a property's first discovery is at its least depth;
    /// memory adds the widest two layers.
    Bfs,
}

impl<const N: usize> Search<'_, N> {
    /// After a batch: stop at the memory limit (counting `extra` bytes beside the
    /// table, and the old table while a grown one is built), or grow the table.
    fn after_batch(&self, extra: usize) {
        let t = self.table.read().unwrap();
        let (bytes, grow) = (t.bytes() + extra, t.wants_growth());
        drop(t);
        if bytes + if grow { 2 * bytes } else { 0 } > self.opts.mem_limit {
            self.stop(Incomplete::MemoryLimit {
                limit: self.opts.mem_limit,
            });
        } else if grow {
            let mut t = self.table.write().unwrap();
            if t.wants_growth() {
                *t = t.grown();
            }
        }
    }

    fn progress(&self, start: Instant, depth: usize) -> Progress {
        Progress {
            states: self.table.read().unwrap().len(),
            expanded: self.expanded.load(Ordering::Relaxed),
            depth,
            seconds: start.elapsed().as_secs_f64(),
        }
    }

    fn done(&self) -> bool {
        self.stopped() || self.left.load(Ordering::Relaxed) == 0
    }
}

/// Search every state of `model` (or until every property is discovered, as
/// Stateright's checker does); `progress` is called now and then from the
/// calling thread.
pub fn search(model: &Quiesce, opts: &Options, progress: &mut dyn FnMut(Progress)) -> Outcome {
    // The model's state holds its bios inline: a search whose bounds need
    // few of them runs the same model at a smaller capacity, so that each
    // state it copies is smaller.
    match model.bios_needed() {
        0..=6 => search_n(&model.resized::<6>(), opts, progress),
        7..=12 => search_n(&model.resized::<12>(), opts, progress),
        _ => search_n(model, opts, progress),
    }
}

fn search_n<const N: usize>(
    model: &Quiesce<N>,
    opts: &Options,
    progress: &mut dyn FnMut(Progress),
) -> Outcome {
    let start = Instant::now();
    let props = model.properties();
    let n = props.len();
    let search = Search {
        model,
        opts,
        table: RwLock::new(Table::with_bits(if opts.table_bytes >= 8 << 20 {
            (opts.table_bytes / 8).ilog2()
        } else {
            20
        })),
        found: (0..n).map(|_| AtomicBool::new(false)).collect(),
        left: AtomicUsize::new(n),
        props,
        transitions: AtomicUsize::new(0),
        expanded: AtomicUsize::new(0),
        incomplete: Mutex::new(None),
    };
    let mut init: Vec<State<N>> = Vec::new();
    {
        let table = search.table.read().unwrap();
        let mut buf = [0u8; encode::MAX];
        for s in model.init_states() {
            let len = encode::encode(&s, opts.symmetry, &mut buf);
            if table.insert(fingerprint(&buf[..len])) {
                init.push(s);
            }
        }
    }
    let depth = match opts.order {
        Order::Dfs => dfs(&search, init, start, progress),
        Order::Bfs => bfs(&search, init, start, progress),
    };
    if STOP.load(Ordering::Relaxed) {
        search.stop(Incomplete::Stopped);
    }
    let table = search.table.into_inner().unwrap();
    Outcome {
        unique_states: table.len(),
        states: search.transitions.load(Ordering::Relaxed),
        max_depth: depth,
        discovered: search
            .props
            .iter()
            .zip(&search.found)
            .filter(|(_, f)| f.load(Ordering::Relaxed))
            .map(|(p, _)| p.name)
            .collect(),
        incomplete: search.incomplete.into_inner().unwrap(),
        table_bytes: table.bytes(),
    }
}

/// Breadth first by layers; each layer's batches are shared out to the threads.
fn bfs<const N: usize>(
    search: &Search<N>,
    mut layer: Vec<State<N>>,
    start: Instant,
    progress: &mut dyn FnMut(Progress),
) -> usize {
    let threads = search.opts.threads.max(1);
    let state_bytes = std::mem::size_of::<State<N>>();
    let mut depth = 0;
    let mut last = Instant::now();
    while !layer.is_empty() && !search.done() {
        depth += 1;
        let cursor = AtomicUsize::new(0);
        let next_len = AtomicUsize::new(0);
        let parts: Vec<Vec<State<N>>> = std::thread::scope(|sc| {
            let work = || {
                let mut next = Vec::new();
                let mut scratch = Scratch::default();
                while !search.stopped() {
                    let from = cursor.fetch_add(BATCH, Ordering::Relaxed);
                    if from >= layer.len() {
                        break;
                    }
                    let to = (from + BATCH).min(layer.len());
                    let before = next.len();
                    search.expand(layer[from..to].iter(), &mut scratch);
                    search.keep_new(&mut scratch, |n| next.push(n));
                    let grown = next_len.fetch_add(next.len() - before, Ordering::Relaxed);
                    search.after_batch((layer.len() + grown) * state_bytes);
                }
                search.flush(&mut scratch);
                next
            };
            let handles: Vec<_> = (1..threads).map(|_| sc.spawn(work)).collect();
            let mut parts = vec![work()];
            parts.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a search thread panicked")),
            );
            parts
        });
        layer = parts.into_iter().flatten().collect();
        if last.elapsed().as_millis() >= 200 {
            last = Instant::now();
            progress(search.progress(start, depth));
        }
    }
    depth
}

/// States a DFS worker expands at a time (the top of its stack).
const DFS_BATCH: usize = 32;

/// Work shared between DFS threads: states given away, and who waits for them.
struct Pool<const N: usize> {
    states: Vec<(State<N>, u32)>,
    idle: usize,
    finished: bool,
}

/// Depth first: each thread runs its own stack; an idle thread waits for the
/// others to give it the bottom half of theirs.
fn dfs<const N: usize>(
    search: &Search<N>,
    init: Vec<State<N>>,
    start: Instant,
    progress: &mut dyn FnMut(Progress),
) -> usize {
    let threads = search.opts.threads.max(1);
    let pool = Mutex::new(Pool {
        states: init.into_iter().map(|s| (s, 1)).collect(),
        idle: 0,
        finished: false,
    });
    let wake = Condvar::new();
    let hungry = AtomicUsize::new(0);
    let max_depth = AtomicUsize::new(0);
    let state_bytes = std::mem::size_of::<State<N>>() + 4;
    let work = |report: &mut dyn FnMut()| {
        let mut stack: Vec<(State<N>, u32)> = Vec::new();
        let mut scratch = Scratch::default();
        let mut deepest = 0;
        loop {
            if stack.is_empty() {
                let mut p = pool.lock().unwrap();
                loop {
                    if p.finished || search.done() {
                        p.finished = true;
                        wake.notify_all();
                        search.flush(&mut scratch);
                        return;
                    }
                    if let Some(s) = p.states.pop() {
                        stack.push(s);
                        break;
                    }
                    p.idle += 1;
                    if p.idle == threads {
                        p.finished = true;
                        wake.notify_all();
                        continue;
                    }
                    hungry.fetch_add(1, Ordering::Relaxed);
                    p = wake.wait(p).unwrap();
                    hungry.fetch_sub(1, Ordering::Relaxed);
                    p.idle -= 1;
                }
            }
            if search.stopped() {
                // Ctrl-C or the memory limit: drop this thread's work and wind down.
                stack.clear();
                continue;
            }
            // Expand the top of the stack (up to DFS_BATCH states of one
            // depth, from the top down); successors replace them on top.
            let depth = stack.last().map_or(0, |s| s.1);
            let top = stack.len()
                - stack
                    .iter()
                    .rev()
                    .take(DFS_BATCH)
                    .take_while(|e| e.1 == depth)
                    .count();
            if depth > deepest {
                deepest = depth;
                max_depth.fetch_max(deepest as usize, Ordering::Relaxed);
            }
            search.expand(stack[top..].iter().rev().map(|e| &e.0), &mut scratch);
            stack.truncate(top);
            search.keep_new(&mut scratch, |n| stack.push((n, depth + 1)));
            search.after_batch(stack.len() * state_bytes);
            report();
            // Give the bottom half of the stack to a waiting thread.
            if hungry.load(Ordering::Relaxed) > 0 && stack.len() >= 2 {
                let half: Vec<_> = stack.drain(..stack.len() / 2).collect();
                pool.lock().unwrap().states.extend(half);
                wake.notify_one();
            }
        }
    };
    let mut last = Instant::now();
    std::thread::scope(|sc| {
        let handles: Vec<_> = (1..threads)
            .map(|_| sc.spawn(|| work(&mut || {})))
            .collect();
        work(&mut || {
            if last.elapsed().as_millis() >= 200 {
                last = Instant::now();
                progress(search.progress(start, max_depth.load(Ordering::Relaxed)));
            }
        });
        for h in handles {
            h.join().expect("a search thread panicked");
        }
    });
    max_depth.load(Ordering::Relaxed)
}
