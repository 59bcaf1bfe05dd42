//! Liveness under weak fairness: every submitted bio eventually completes,
//! and every call (attach, detach, `del_gendisk`) eventually returns.
//!
//! Stateright's `eventually` looks at acyclic paths only: a run that loops
//! forever (a call that restarts each time it meets the same condition) is
//! not seen. This check stores the whole state graph (no symmetry: fairness
//! names threads, and symmetry renames them) and looks for a *fair cycle*:
//! a strongly connected set of states, reachable from the start, in which an
//! obligation stays pending and every thread either takes a step or is
//! blocked (has nothing enabled) at some state. Under weak fairness such a
//! cycle can repeat forever, so the obligation is never met.
//!
//! The threads (fairness groups) are each submitter, each controller, the
//! remover, each freezer, O completing each bio (the device completes each
//! request on its own), the kworker resubmitting each bio, and the RCU
//! callbacks; `rmmod` and a new disk at O's dev_t may never happen, so no
//! fairness is assumed for them. A group that
//! is enabled at every state of a cycle but never steps in it makes the cycle
//! unfair; a sub-cycle cannot be fairer (it has fewer steps and no more
//! blocked states), so checking the maximal strongly connected components of
//! the obligation's pending states is complete. Mutex waiters get weak
//! fairness only: a thread blocked on `open_mutex` that another thread keeps
//! taking back is reported starving (the kernel's mutex handoff is not
//! assumed).
//!
//! A counterexample is a lasso: the shortest path to the cycle, then a cycle
//! that takes each stepping thread's step and passes each blocked thread's
//! blocked state, back to where it began.

use crate::engine::{state_fingerprint, Incomplete};
use crate::model::{Action, Loc, Phase, Quiesce, State, Who, MAX_BIOS, MAX_CTLS};
use stateright::Model;
use std::collections::{HashMap, VecDeque};

/// Every submitted bio eventually completes.
pub const BIOS_COMPLETE: &str = "bios_complete";
/// Every attach, detach and `del_gendisk` call eventually returns.
pub const CALLS_RETURN: &str = "calls_return";
/// The liveness properties, as written in `expect`.
pub const LIVENESS: [&str; 2] = [BIOS_COMPLETE, CALLS_RETURN];

/// Submitters are groups 0..4 (the spec's bound on submitters is 4).
const G_CTL: u8 = 4;
const G_RM: u8 = G_CTL + MAX_CTLS as u8;
const G_FREEZER: u8 = G_RM + 1;
const G_COMPLETE: u8 = G_FREEZER + 2;
const G_KWORKER: u8 = G_COMPLETE + MAX_BIOS as u8;
const G_RMMOD: u8 = G_KWORKER + MAX_BIOS as u8;
/// The RCU callbacks (`kfree_rcu`): the kernel runs them once their grace
/// period has ended.
const G_RCU: u8 = G_RMMOD + 1;
/// `add_disk(O')` of a new disk at O's dev_t.
const G_ADD: u8 = G_RCU + 1;
const _: () = assert!(G_ADD < 64);
/// Events of the environment that may never happen (`rmmod`, a new disk):
/// no fairness makes them happen, so a cycle that leaves them enabled and
/// never takes them is still fair.
const OPTIONAL: u64 = 1 << G_RMMOD | 1 << G_ADD;

/// Obligation bits: each bio in flight, each pass through the hot path (its
/// `submit_bio_noacct` call), each controller's call, the remover's.
const O_PASS: u32 = MAX_BIOS as u32;
const O_CTL: u32 = O_PASS + MAX_BIOS as u32;
const O_RM: u32 = O_CTL + MAX_CTLS as u32;
const _: () = assert!(O_RM < 64);

/// A run that loops forever with an obligation pending.
#[derive(Debug, Clone)]
pub struct Lasso {
    pub init: State,
    /// From the start to the cycle's first state.
    pub prefix: Vec<(Action, State)>,
    /// The steps that repeat forever; the last one returns to where the cycle began.
    pub cycle: Vec<(Action, State)>,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub property: &'static str,
    /// What never happens, in plain words (`bio1.1 never completes`).
    pub what: String,
    /// Threads enabled somewhere on the cycle that never step in it: each is
    /// blocked again before it is scheduled.
    pub starved: Vec<String>,
    pub lasso: Lasso,
}

#[derive(Debug, Clone)]
pub struct LiveOutcome {
    pub states: usize,
    pub edges: usize,
    /// Strongly connected components with a cycle in the whole graph.
    pub cyclic_components: usize,
    /// At most one violation per property: the first obligation found.
    pub violations: Vec<Violation>,
    pub incomplete: Option<Incomplete>,
    pub seconds: f64,
}

impl LiveOutcome {
    pub fn violated(&self, prop: &str) -> Option<&Violation> {
        self.violations.iter().find(|v| v.property == prop)
    }
}

#[derive(Clone, Copy)]
struct Edge {
    to: u32,
    /// The action's index among the source state's actions.
    act: u16,
    group: u8,
}

/// The explored graph: states in breadth-first order with their edges.
struct Graph {
    states: Vec<State>,
    /// `edges[start[i]..start[i + 1]]` leave state `i`.
    start: Vec<u32>,
    edges: Vec<Edge>,
    /// Groups with an action enabled, per state.
    enabled: Vec<u64>,
    /// Pending obligations, per state.
    pending: Vec<u64>,
    /// The breadth-first tree: the predecessor and the action index.
    parent: Vec<(u32, u16)>,
}

impl Graph {
    fn out(&self, u: u32) -> &[Edge] {
        &self.edges[self.start[u as usize] as usize..self.start[u as usize + 1] as usize]
    }
}

/// The fairness group of an action.
fn group(a: &Action) -> u8 {
    match *a {
        Action::Submit { s, .. } => s,
        Action::Hot { b, who, .. } | Action::Park { b, who } | Action::Split { b, who } => {
            match who {
                Who::Submitter(s) => s,
                Who::Controller(c) => G_CTL + c,
                Who::Kworker => G_KWORKER + b,
            }
        }
        // I's worker for this bio, as a kworker resubmitting it.
        Action::Unpark { b } => G_KWORKER + b,
        Action::Complete { b } | Action::CompleteFront { b } => G_COMPLETE + b,
        Action::Ctl { c, .. }
        | Action::Fail { c, .. }
        | Action::Return { c, .. }
        | Action::BeginDetach { c } => G_CTL + c,
        Action::Remover { .. } => G_RM,
        Action::Freezer { f, .. } => G_FREEZER + f,
        Action::Rmmod => G_RMMOD,
        Action::RcuFree { .. } => G_RCU,
        Action::AddDisk => G_ADD,
    }
}

fn group_name(m: &Quiesce, g: u8) -> String {
    match g {
        g if g < G_CTL => format!("submitter {}", g + 1),
        g if g < G_RM => format!("controller {}", g - G_CTL + 1),
        G_RM => "the remover".into(),
        G_RMMOD => "rmmod".into(),
        G_RCU => "the RCU callbacks".into(),
        G_ADD => "add_disk".into(),
        g if g < G_COMPLETE => format!("freezer {}", g - G_FREEZER + 1),
        g if g < G_KWORKER => format!(
            "O's completion of {}",
            m.bio_name((g - G_COMPLETE) as usize)
        ),
        g => format!(
            "the kworker resubmitting {}",
            m.bio_name((g - G_KWORKER) as usize)
        ),
    }
}

fn pending(m: &Quiesce, s: &State) -> u64 {
    let mut p = 0u64;
    for (b, bio) in s.bios.iter().enumerate() {
        if !matches!(bio.loc, Loc::Unsubmitted | Loc::Done | Loc::Lost) {
            p |= 1 << b;
        }
        if bio.has(crate::model::bf::PASS) {
            p |= 1 << (O_PASS + b as u32);
        }
    }
    for (c, ctl) in s.ctls.iter().enumerate() {
        if matches!(
            ctl.phase,
            Phase::Attach | Phase::AttachErr { .. } | Phase::Detach | Phase::DetachErr { .. }
        ) {
            p |= 1 << (O_CTL + c as u32);
        }
    }
    // del_gendisk(O) is called from the start, as attach is.
    if m.bounds.remover && (s.rm.pc as usize) < m.rm_len() {
        p |= 1 << O_RM;
    }
    p
}

fn obligation(m: &Quiesce, s: &State, o: u32) -> (&'static str, String) {
    if o < O_PASS {
        (
            BIOS_COMPLETE,
            format!("{} never completes", m.bio_name(o as usize)),
        )
    } else if o < O_CTL {
        (
            CALLS_RETURN,
            format!(
                "submit_bio_noacct({}) never returns",
                m.bio_name((o - O_PASS) as usize)
            ),
        )
    } else if o < O_RM {
        let c = (o - O_CTL) as usize;
        let call = match s.ctls[c].phase {
            Phase::Detach | Phase::DetachErr { .. } => "detach",
            _ => "attach",
        };
        (
            CALLS_RETURN,
            format!("controller {}'s {call}() never returns", c + 1),
        )
    } else {
        (CALLS_RETURN, "del_gendisk(O) never returns".into())
    }
}

/// Explore the whole graph breadth-first; `None` past the memory limit.
fn explore(m: &Quiesce, mem_limit: usize) -> Result<Graph, Incomplete> {
    let per_state = std::mem::size_of::<State>() + 64;
    let mut g = Graph {
        states: Vec::new(),
        start: vec![0],
        edges: Vec::new(),
        enabled: Vec::new(),
        pending: Vec::new(),
        parent: Vec::new(),
    };
    let mut index: HashMap<u64, u32> = HashMap::new();
    for s in m.init_states() {
        if index
            .insert(state_fingerprint(&s), g.states.len() as u32)
            .is_none()
        {
            g.parent.push((u32::MAX, 0));
            g.states.push(s);
        }
    }
    let mut actions = Vec::new();
    let mut u = 0;
    while u < g.states.len() {
        if crate::engine::STOP.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Incomplete::Stopped);
        }
        if g.states.len() * per_state + g.edges.len() * std::mem::size_of::<Edge>() > mem_limit {
            return Err(Incomplete::MemoryLimit { limit: mem_limit });
        }
        if g.states.len() >= u32::MAX as usize || g.edges.len() >= u32::MAX as usize - 64 {
            return Err(Incomplete::MemoryLimit { limit: mem_limit });
        }
        let s = g.states[u].clone();
        actions.clear();
        m.actions(&s, &mut actions);
        let mut en = 0u64;
        for (i, a) in actions.iter().enumerate() {
            let grp = group(a);
            en |= 1 << grp;
            let Some(t) = m.next_state(&s, *a) else {
                continue;
            };
            let fp = state_fingerprint(&t);
            let n = g.states.len() as u32;
            let to = *index.entry(fp).or_insert(n);
            if to == n {
                g.states.push(t);
                g.parent.push((u as u32, i as u16));
            }
            g.edges.push(Edge {
                to,
                act: i as u16,
                group: grp,
            });
        }
        g.enabled.push(en);
        g.pending.push(pending(m, &s));
        g.start.push(g.edges.len() as u32);
        u += 1;
    }
    Ok(g)
}

/// Tarjan's strongly connected components over the states `inside` admits,
/// iteratively; calls `found` with each component that has a cycle.
fn components(
    g: &Graph,
    nodes: &[u32],
    inside: &dyn Fn(u32) -> bool,
    found: &mut dyn FnMut(&[u32]),
) {
    let mut idx: HashMap<u32, (u32, u32)> = HashMap::new(); // index, lowlink
    let mut on_stack: HashMap<u32, bool> = HashMap::new();
    let mut stack: Vec<u32> = Vec::new();
    let mut next = 0u32;
    for &root in nodes {
        if idx.contains_key(&root) {
            continue;
        }
        // (node, next edge to look at)
        let mut call: Vec<(u32, usize)> = vec![(root, 0)];
        idx.insert(root, (next, next));
        next += 1;
        stack.push(root);
        on_stack.insert(root, true);
        while let Some(&mut (v, ref mut e)) = call.last_mut() {
            let out = g.out(v);
            if *e < out.len() {
                let w = out[*e].to;
                *e += 1;
                if !inside(w) {
                    continue;
                }
                match idx.get(&w) {
                    None => {
                        idx.insert(w, (next, next));
                        next += 1;
                        stack.push(w);
                        on_stack.insert(w, true);
                        call.push((w, 0));
                    }
                    Some(&(wi, _)) if on_stack.get(&w) == Some(&true) => {
                        let l = idx.get_mut(&v).expect("visited");
                        l.1 = l.1.min(wi);
                    }
                    Some(_) => {}
                }
                continue;
            }
            call.pop();
            let (vi, vl) = idx[&v];
            if let Some(&(p, _)) = call.last() {
                let l = idx.get_mut(&p).expect("visited");
                l.1 = l.1.min(vl);
            }
            if vi == vl {
                let mut comp = Vec::new();
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack.insert(w, false);
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                let cyclic = comp.len() > 1 || g.out(v).iter().any(|e| e.to == v);
                if cyclic {
                    found(&comp);
                }
            }
        }
    }
}

/// Whether a component is fair: every group enabled at all of its states
/// steps inside it. Returns the groups that step and those always enabled.
fn fairness(g: &Graph, comp: &[u32], member: &dyn Fn(u32) -> bool) -> (bool, u64, u64) {
    let mut stepped = 0u64;
    let mut always = !OPTIONAL;
    for &u in comp {
        always &= g.enabled[u as usize];
        for e in g.out(u) {
            if member(e.to) {
                stepped |= 1 << e.group;
            }
        }
    }
    (always & !stepped == 0, stepped, always)
}

/// Shortest path of at least one step inside a component from `from` to a
/// state `goal` accepts; returns the edges taken as (source, edge).
fn path_in(
    g: &Graph,
    member: &dyn Fn(u32) -> bool,
    from: u32,
    goal: &dyn Fn(u32) -> bool,
) -> Vec<(u32, Edge)> {
    let mut prev: HashMap<u32, (u32, Edge)> = HashMap::new();
    let mut q = VecDeque::new();
    let visit = |u: u32, prev: &mut HashMap<u32, (u32, Edge)>, q: &mut VecDeque<u32>| {
        for e in g.out(u) {
            if member(e.to) && !prev.contains_key(&e.to) {
                prev.insert(e.to, (u, *e));
                q.push_back(e.to);
            }
        }
    };
    visit(from, &mut prev, &mut q);
    while let Some(u) = q.pop_front() {
        if goal(u) {
            let mut out = Vec::new();
            let mut v = u;
            loop {
                let (p, e) = prev[&v];
                out.push((p, e));
                if p == from {
                    break;
                }
                v = p;
            }
            out.reverse();
            return out;
        }
        if u != from {
            visit(u, &mut prev, &mut q);
        }
    }
    Vec::new()
}

fn replay(m: &Quiesce, g: &Graph, steps: &[(u32, Edge)]) -> Vec<(Action, State)> {
    let mut out = Vec::new();
    let mut actions = Vec::new();
    for &(u, e) in steps {
        actions.clear();
        m.actions(&g.states[u as usize], &mut actions);
        let a = actions[e.act as usize];
        out.push((a, g.states[e.to as usize].clone()));
    }
    out
}

/// Build the lasso for a fair component.
fn lasso(
    m: &Quiesce,
    g: &Graph,
    comp: &[u32],
    member: &dyn Fn(u32) -> bool,
) -> (Lasso, Vec<String>) {
    let entry = *comp.iter().min().expect("a component has states");
    // The prefix from the breadth-first tree (state numbers are BFS order).
    let mut pre = Vec::new();
    let mut v = entry;
    while g.parent[v as usize].0 != u32::MAX {
        let (p, act) = g.parent[v as usize];
        let e = *g
            .out(p)
            .iter()
            .find(|e| e.act == act)
            .expect("the tree edge is an edge");
        pre.push((p, e));
        v = p;
    }
    pre.reverse();
    let root = v;

    let (_, stepped, always) = fairness(g, comp, member);
    let ever: u64 = comp.iter().fold(0, |a, &u| a | g.enabled[u as usize]);
    let mut cyc: Vec<(u32, Edge)> = Vec::new();
    let mut at = entry;
    for grp in 0..64u8 {
        let bit = 1u64 << grp;
        if ever & bit == 0 {
            continue;
        }
        if always & bit == 0 {
            // Pass a state where the group is blocked, unless the walk already has.
            let blocked = |u: u32| g.enabled[u as usize] & bit == 0;
            if blocked(at) || cyc.iter().any(|(u, _)| blocked(*u)) {
                continue;
            }
            let p = path_in(g, member, at, &blocked);
            if let Some(&(_, e)) = p.last() {
                at = e.to;
            }
            cyc.extend(p);
        } else if stepped & bit != 0 {
            if cyc.iter().any(|(_, e)| e.group == grp) {
                continue;
            }
            // Walk to a state with a step of the group inside, and take it.
            let src = |u: u32| g.out(u).iter().any(|e| e.group == grp && member(e.to));
            let p = if src(at) {
                Vec::new()
            } else {
                path_in(g, member, at, &src)
            };
            if let Some(&(_, e)) = p.last() {
                at = e.to;
            }
            cyc.extend(p);
            let e = *g
                .out(at)
                .iter()
                .find(|e| e.group == grp && member(e.to))
                .expect("the group steps here");
            cyc.push((at, e));
            at = e.to;
        }
    }
    // Close the cycle (a component with a cycle always has a way back).
    let back = path_in(g, member, at, &|u| u == entry);
    if at != entry || cyc.is_empty() {
        cyc.extend(back);
    }
    // Starved: enabled at a state of the cycle shown, with no step in it.
    let on_cycle: u64 = cyc.iter().fold(0, |a, (u, _)| a | g.enabled[*u as usize]);
    let took: u64 = cyc.iter().fold(0, |a, (_, e)| a | 1 << e.group);
    let starved = (0..64u8)
        .filter(|&grp| on_cycle & !took & (1 << grp) != 0)
        .map(|grp| group_name(m, grp))
        .collect();
    (
        Lasso {
            init: g.states[root as usize].clone(),
            prefix: replay(m, g, &pre),
            cycle: replay(m, g, &cyc),
        },
        starved,
    )
}

/// Check both liveness properties of one model.
pub fn check(m: &Quiesce, mem_limit: usize) -> LiveOutcome {
    let start = std::time::Instant::now();
    let g = match explore(m, mem_limit) {
        Ok(g) => g,
        Err(why) => {
            return LiveOutcome {
                states: 0,
                edges: 0,
                cyclic_components: 0,
                violations: Vec::new(),
                incomplete: Some(why),
                seconds: start.elapsed().as_secs_f64(),
            }
        }
    };
    let all: Vec<u32> = (0..g.states.len() as u32).collect();
    let mut cyclic: Vec<Vec<u32>> = Vec::new();
    components(&g, &all, &|_| true, &mut |c| cyclic.push(c.to_vec()));
    let mut violations: Vec<Violation> = Vec::new();
    for comp in &cyclic {
        let some = comp.iter().fold(0u64, |a, &u| a | g.pending[u as usize]);
        // A call's obligation first: "detach() never returns" says more than
        // the pass that its thread is stuck in.
        for o in (O_CTL..=O_RM).chain(0..O_CTL) {
            if some & (1 << o) == 0 {
                continue;
            }
            let inside: std::collections::HashSet<u32> = comp
                .iter()
                .copied()
                .filter(|&u| g.pending[u as usize] & (1 << o) != 0)
                .collect();
            let member = |u: u32| inside.contains(&u);
            let nodes: Vec<u32> = comp.iter().copied().filter(|u| member(*u)).collect();
            let mut fair: Option<Vec<u32>> = None;
            components(&g, &nodes, &member, &mut |c| {
                let cm: std::collections::HashSet<u32> = c.iter().copied().collect();
                if fair.is_none() && fairness(&g, c, &|u| cm.contains(&u)).0 {
                    fair = Some(c.to_vec());
                }
            });
            let Some(c) = fair else { continue };
            let cm: std::collections::HashSet<u32> = c.iter().copied().collect();
            let (lasso, starved) = lasso(m, &g, &c, &|u| cm.contains(&u));
            let (property, what) = obligation(m, &g.states[c[0] as usize], o);
            if violations.iter().any(|v| v.property == property) {
                continue;
            }
            violations.push(Violation {
                property,
                what,
                starved,
                lasso,
            });
        }
    }
    LiveOutcome {
        states: g.states.len(),
        edges: g.edges.len(),
        cyclic_components: cyclic.len(),
        violations,
        incomplete: None,
        seconds: start.elapsed().as_secs_f64(),
    }
}
