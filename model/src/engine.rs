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
use std::sync::{Mutex, RwLock};
use std::time::Instant;
pub use table::Table;

/// Set to end a running search at its next batch (the CLI's Ctrl-C handler does).
pub static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone)]
pub struct Options {
    pub symmetry: bool,
    pub threads: usize,
    /// End the search when the visited set and layers would pass this many bytes.
    pub mem_limit: usize,
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
    pub depth: usize,
    pub seconds: f64,
}

/// States a worker takes from the layer at a time.
const BATCH: usize = 256;

fn fingerprint(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes).max(1)
}

/// The shared state of one search.
struct Search<'a> {
    model: &'a Quiesce,
    opts: &'a Options,
    table: RwLock<Table>,
    /// The properties, in the model's order, and which are found.
    props: Vec<stateright::Property<Quiesce>>,
    found: Vec<AtomicBool>,
    left: AtomicUsize,
    transitions: AtomicUsize,
    incomplete: Mutex<Option<Incomplete>>,
}

impl Search<'_> {
    /// Evaluate every property not yet found on `s`, which has `n_actions` actions.
    fn check(&self, s: &State, n_actions: usize) {
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

    /// Expand states `layer[from..to]`; new successors go to `next`.
    fn expand(&self, layer: &[State], next: &mut Vec<State>) {
        let mut acts: Vec<Action> = Vec::new();
        let mut succ: Vec<(State, u64)> = Vec::new();
        let mut buf = [0u8; encode::MAX];
        let table = self.table.read().unwrap();
        for s in layer {
            acts.clear();
            self.model.actions(s, &mut acts);
            self.check(s, acts.len());
            succ.clear();
            for a in acts.drain(..) {
                if let Some(n) = self.model.next_state(s, a) {
                    let len = encode::encode(&n, self.opts.symmetry, &mut buf);
                    let fp = fingerprint(&buf[..len]);
                    table.prefetch(fp);
                    succ.push((n, fp));
                }
            }
            self.transitions.fetch_add(succ.len(), Ordering::Relaxed);
            for (n, fp) in succ.drain(..) {
                if table.insert(fp) {
                    next.push(n);
                }
            }
        }
    }
}

/// Search every state of `model` (or until every property is discovered, as
/// Stateright's checker does); `progress` is called now and then from the
/// calling thread.
pub fn search(model: &Quiesce, opts: &Options, progress: &mut dyn FnMut(Progress)) -> Outcome {
    let start = Instant::now();
    let props = model.properties();
    let n = props.len();
    let search = Search {
        model,
        opts,
        table: RwLock::new(Table::with_bits(20)),
        found: (0..n).map(|_| AtomicBool::new(false)).collect(),
        left: AtomicUsize::new(n),
        props,
        transitions: AtomicUsize::new(0),
        incomplete: Mutex::new(None),
    };
    let mut layer: Vec<State> = Vec::new();
    {
        let table = search.table.read().unwrap();
        let mut buf = [0u8; encode::MAX];
        for s in model.init_states() {
            let len = encode::encode(&s, opts.symmetry, &mut buf);
            if table.insert(fingerprint(&buf[..len])) {
                layer.push(s);
            }
        }
    }
    let threads = opts.threads.max(1);
    let state_bytes = std::mem::size_of::<State>();
    let mut depth = 0;
    let mut last_progress = Instant::now();
    while !layer.is_empty() && search.left.load(Ordering::Relaxed) > 0 {
        depth += 1;
        let cursor = AtomicUsize::new(0);
        let next_len = AtomicUsize::new(0);
        let parts: Vec<Vec<State>> = std::thread::scope(|sc| {
            let work = || {
                let mut next = Vec::new();
                loop {
                    if search.stopped() {
                        break;
                    }
                    let from = cursor.fetch_add(BATCH, Ordering::Relaxed);
                    if from >= layer.len() {
                        break;
                    }
                    let to = (from + BATCH).min(layer.len());
                    let before = next.len();
                    search.expand(&layer[from..to], &mut next);
                    let grown = next_len.fetch_add(next.len() - before, Ordering::Relaxed);
                    let t = search.table.read().unwrap();
                    let bytes = t.bytes() + (layer.len() + grown) * state_bytes;
                    let grow = t.wants_growth();
                    drop(t);
                    if bytes + if grow { 2 * bytes } else { 0 } > opts.mem_limit {
                        search.stop(Incomplete::MemoryLimit {
                            limit: opts.mem_limit,
                        });
                    } else if grow {
                        let mut t = search.table.write().unwrap();
                        if t.wants_growth() {
                            *t = t.grown();
                        }
                    }
                }
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
        if STOP.load(Ordering::Relaxed) {
            search.stop(Incomplete::Stopped);
        }
        layer = parts.into_iter().flatten().collect();
        if last_progress.elapsed().as_millis() >= 200 {
            last_progress = Instant::now();
            progress(Progress {
                states: search.table.read().unwrap().len(),
                depth,
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        if search.incomplete.lock().unwrap().is_some() {
            break;
        }
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
