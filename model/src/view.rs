//! How a state looks to a person: a multi-line description and an SVG with one
//! lane per thread and device, for the Stateright Explorer and for reports.

use crate::model::fx;
use crate::model::{
    bf, rmheld, Action, Bio, ILife, Loc, Phase, Quiesce, State, Who, FREEZER_STEPS,
};
use crate::spec::{HotOp, Kind};
use stateright::{Expectation, Model, Path};
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl<const N: usize> Quiesce<N> {
    fn bio_line(&self, b: usize, bio: &Bio) -> String {
        let name = self.bio_name(b);
        let what = if bio.via.is_some() && matches!(bio.loc, Loc::Carried | Loc::InO) {
            format!("clone of {name}")
        } else {
            name
        };
        let pass = if bio.has(bf::PASS) {
            let op = self
                .protocol
                .hot_op(bio.pc as usize)
                .map_or("end", |o| o.name());
            format!(
                " at hot-path step {} ({op}){}",
                bio.pc,
                if bio.has(bf::PASS_QREF) {
                    ", holds a queue ref"
                } else {
                    ""
                }
            )
        } else {
            String::new()
        };
        let loc = match bio.loc {
            Loc::Unsubmitted => "not submitted".to_string(),
            Loc::Carried => "in submit_bio_noacct".to_string(),
            Loc::InO => format!(
                "inside O{}",
                if bio.via.is_none() {
                    " (skipped I)"
                } else {
                    " (sent by I)"
                }
            ),
            Loc::DeferredO => "deferred by suspended O".into(),
            Loc::InI => "inside I, clone queued".into(),
            Loc::DeferredI => "deferred by suspended I".into(),
            Loc::Done => "completed".into(),
            Loc::Lost => "lost (never completes)".into(),
            Loc::ParkedI => "parked in I (copy-on-write)".into(),
            Loc::Chained => "completed, its end_io waiting for its split front (bio_chain)".into(),
        };
        let front = if bio.fr & fx::FRONT_IN_O != 0 {
            if bio.fr & fx::FRONT_I != 0 {
                "; its split front is inside O (sent by I)"
            } else {
                "; its split front is inside O (skipped I)"
            }
        } else {
            ""
        };
        format!("{what}: {loc}{front}{pass}")
    }

    /// The remover's line: its next step, what it holds, the I it took over.
    fn rm_line(&self, s: &State<N>) -> String {
        let r = &s.rm;
        let mut line = if r.pc as usize >= self.rm_len() {
            "done".to_string()
        } else {
            format!("before {}", self.rm_step_name(r.pc, r.sub))
        };
        let holds: Vec<&str> = [
            (rmheld::MUTEX, "open_mutex"),
            (rmheld::DRAIN, "the drain's freeze"),
            (rmheld::Q_FROZEN, "queue freeze"),
        ]
        .iter()
        .filter(|(bit, _)| r.held & bit != 0)
        .map(|&(_, n)| n)
        .collect();
        if !holds.is_empty() {
            line.push_str(&format!("; holds {}", holds.join(", ")));
        }
        if let Some(ip) = r.ip {
            line.push_str(&format!("; took over I{}", ip.c + 1));
        }
        line
    }

    fn ctl_line(&self, s: &State<N>, ci: usize) -> String {
        let c = &s.ctls[ci];
        let step = |list: &[crate::spec::CtlStep], i: u8| {
            list.get(i as usize)
                .map_or("return".to_string(), |st| st.prim.call())
        };
        let at = match c.phase {
            Phase::Attach => format!(
                "attach step {}: {}",
                c.pc,
                step(&self.protocol.attach, c.pc)
            ),
            Phase::AttachErr { failed } => format!(
                "attach failed at {}; error path",
                step(&self.protocol.attach, failed)
            ),
            Phase::Attached => "attached".into(),
            Phase::Detach => format!(
                "detach step {}: {}",
                c.pc,
                step(&self.protocol.detach, c.pc)
            ),
            Phase::DetachErr { failed } => format!(
                "detach failed at {}; error path",
                step(&self.protocol.detach, failed)
            ),
            Phase::Done => "done".into(),
        };
        let holds = Self::held_names(c);
        format!(
            "cycle {}/{}, {at}{}{}",
            (c.cycle + 1).min(self.bounds.cycles),
            self.bounds.cycles,
            if c.sub > 0 {
                format!(" (sub-step {})", c.sub)
            } else {
                String::new()
            },
            if holds.is_empty() {
                String::new()
            } else {
                format!("; holds {}", holds.join(", "))
            }
        )
    }

    fn failing(&self, s: &State<N>) -> Vec<&'static str> {
        self.properties()
            .into_iter()
            .filter(|p| p.expectation == Expectation::Always && !(p.condition)(self, s))
            .map(|p| p.name)
            .collect()
    }

    /// A state as a person reads it, one line per device and thread.
    pub fn describe_state(&self, s: &State<N>) -> String {
        let mut out = String::new();
        let mut o = self.o_conditions(s);
        o.push(format!("{} queue refs", self.qrefs(s)));
        let kind = match self.kind {
            Kind::Request => "blk-mq",
            Kind::Bio => "bio-based",
            Kind::BioSync => "bio-based, completes in submit_bio",
        };
        let _ = writeln!(out, "O ({kind}): {}", o.join(", "));
        let _ = writeln!(
            out,
            "O->bd_interposer = {}",
            s.ptr.map_or("NULL".to_string(), |p| p.to_string())
        );
        for (ci, c) in s.ctls.iter().enumerate() {
            let life = match c.ilife {
                ILife::Freed => "freed",
                ILife::Created => "created",
                ILife::Open => "open",
            };
            let _ = writeln!(
                out,
                "I{} (instance #{}): {life}{}",
                ci + 1,
                c.igen + 1,
                if c.isusp { ", suspended" } else { "" }
            );
        }
        let k = self.bounds.bios as usize;
        for sub in 0..self.bounds.submitters as usize {
            let lines: Vec<String> = (0..k)
                .map(|j| self.bio_line(sub * k + j, &s.bios[sub * k + j]))
                .collect();
            let _ = writeln!(out, "submitter {}: {}", sub + 1, lines.join("; "));
        }
        for ci in 0..s.ctls.len() {
            let _ = writeln!(out, "controller {}: {}", ci + 1, self.ctl_line(s, ci));
            let sb = &s.bios[self.nsub() + ci];
            if sb.loc != Loc::Unsubmitted {
                let _ = writeln!(
                    out,
                    "  superblock write {}",
                    self.bio_line(self.nsub() + ci, sb)
                );
            }
        }
        if self.bounds.remover {
            let _ = writeln!(out, "remover: {}", self.rm_line(s));
        }
        for (f, &pc) in s.freezers.iter().enumerate() {
            let _ = writeln!(
                out,
                "freezer {}: {}",
                f + 1,
                FREEZER_STEPS
                    .get(pc as usize)
                    .map_or("done".to_string(), |x| format!("before {x}"))
            );
        }
        let bad = self.failing(s);
        if !bad.is_empty() {
            let _ = writeln!(out, "VIOLATED here: {}", bad.join(", "));
        }
        out
    }

    /// The lane of whoever took an action, and the lane it handed a bio to, if any.
    fn lane_of(&self, before: &State<N>, a: &Action) -> (usize, Option<usize>) {
        let ns = self.bounds.submitters as usize;
        let nc = self.bounds.controllers as usize;
        let extra = usize::from(self.bounds.remover) + self.bounds.freezers as usize;
        let kworker = ns + nc + extra;
        let o_lane = kworker + 1;
        let lane = |who: Who| match who {
            Who::Submitter(s) => s as usize,
            Who::Controller(c) => ns + c as usize,
            Who::Kworker => kworker,
        };
        match *a {
            Action::Submit { s, .. } => (s as usize, None),
            Action::Hot { b, op, who, .. } => {
                let to = match op {
                    HotOp::DriverSubmit => Some(o_lane),
                    HotOp::Redirect => before.bios[b as usize]
                        .ip
                        .map(|ip| o_lane + 1 + ip.c as usize),
                    _ => None,
                };
                (lane(who), to)
            }
            Action::Split { who, .. } => (lane(who), Some(o_lane)),
            Action::Park { b, who } => (
                lane(who),
                before.bios[b as usize]
                    .ip
                    .map(|ip| o_lane + 1 + ip.c as usize),
            ),
            Action::Unpark { .. } => (kworker, Some(o_lane)),
            Action::Complete { .. } | Action::CompleteFront { .. } => (o_lane, None),
            // The last lane, after the interposers'.
            Action::Rmmod => (o_lane + 1 + nc, None),
            // The lane of the filter whose memory the callback frees.
            Action::RcuFree { i } => (o_lane + 1 + (i / self.bounds.cycles) as usize, None),
            Action::Ctl { c, .. }
            | Action::Fail { c, .. }
            | Action::Return { c, .. }
            | Action::BeginDetach { c } => (ns + c as usize, None),
            Action::Remover { .. } | Action::AddDisk => (ns + nc, None),
            Action::Freezer { f, .. } => (
                ns + nc + usize::from(self.bounds.remover) + f as usize,
                None,
            ),
        }
    }

    /// The SVG view: a lane per thread and device with each one's condition in the last
    /// state, and the path's most recent steps placed in the lane of whoever took them.
    pub fn svg(&self, path: &[(State<N>, Option<Action>)]) -> String {
        let Some((last, _)) = path.last() else {
            return String::new();
        };
        let ns = self.bounds.submitters as usize;
        let nc = self.bounds.controllers as usize;
        let mut lanes: Vec<(String, Vec<String>)> = Vec::new();
        let k = self.bounds.bios as usize;
        for sub in 0..ns {
            lanes.push((
                format!("submitter {}", sub + 1),
                (0..k)
                    .map(|j| self.bio_line(sub * k + j, &last.bios[sub * k + j]))
                    .collect(),
            ));
        }
        for ci in 0..nc {
            lanes.push((
                format!("controller {}", ci + 1),
                vec![self.ctl_line(last, ci)],
            ));
        }
        if self.bounds.remover {
            lanes.push(("remover".into(), vec![self.rm_line(last)]));
        }
        for (f, &pc) in last.freezers.iter().enumerate() {
            lanes.push((
                format!("freezer {}", f + 1),
                vec![FREEZER_STEPS
                    .get(pc as usize)
                    .map_or("done".to_string(), |x| format!("before {x}"))],
            ));
        }
        let kw: Vec<String> = (0..last.bios.len())
            .filter(|&b| last.bios[b].has(bf::KWORKER))
            .map(|b| self.bio_line(b, &last.bios[b]))
            .collect();
        lanes.push((
            "kworker".into(),
            if kw.is_empty() {
                vec!["idle".into()]
            } else {
                kw
            },
        ));
        let d = self.describe_state(last);
        let mut dl = d.lines();
        lanes.push((
            "O (original)".into(),
            vec![
                dl.next().unwrap_or("").trim_start_matches("O ").to_string(),
                dl.next().unwrap_or("").to_string(),
            ],
        ));
        for (ci, c) in last.ctls.iter().enumerate() {
            let inside: Vec<String> = (0..last.bios.len())
                .filter(|&b| {
                    last.bios[b]
                        .via
                        .is_some_and(|v| v.c as usize == ci && v.gen == c.igen)
                })
                .map(|b| format!("holds {}", self.bio_name(b)))
                .collect();
            let mut lines = vec![d.lines().nth(2 + ci).unwrap_or("").to_string()];
            lines.extend(inside);
            lanes.push((format!("I{} (interposer)", ci + 1), lines));
        }
        if self.bounds.rmmod {
            lanes.push((
                "rmmod".into(),
                vec![if last.module_gone {
                    "owner module unloaded".into()
                } else {
                    "owner module loaded".into()
                }],
            ));
        }

        // Geometry: one column per lane, then a column with the steps' text, so that
        // no arrow runs through a label and no label runs over another lane. A
        // monospace glyph at font-size 11 is at most CHAR_W wide.
        let lw = 200usize;
        let chars = (lw - 12) * 10 / CHAR_W10;
        let lanes_w = lw * lanes.len();
        let sx = 10 + lanes_w + 10;
        let sw = 440usize;
        let width = sx + sw + 10;
        let head = 26usize;
        let box_lines = lanes
            .iter()
            .map(|l| l.1.iter().map(|t| wrap(t, chars).len()).sum::<usize>())
            .max()
            .unwrap_or(1);
        let box_h = 14 * box_lines + 12;
        // (state before, action) for each step.
        let steps: Vec<(&State<N>, &Action)> = path
            .iter()
            .filter_map(|(s, a)| a.as_ref().map(|a| (s, a)))
            .collect();
        let shown = &steps[steps.len().saturating_sub(40)..];
        let top = head + box_h + 24;
        let row = 20usize;
        let height = top + row * shown.len() + 20;
        let bad = self.failing(last);
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="quiesce-lanes" width="{width}" height="{height}" font-family="monospace" font-size="11">"#
        );
        if !bad.is_empty() {
            let _ = write!(
                svg,
                r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#3a1010"/>"##
            );
        }
        for (i, (name, lines)) in lanes.iter().enumerate() {
            let x = 10 + i * lw;
            let _ = write!(
                svg,
                r##"<line x1="{cx}" y1="{y1}" x2="{cx}" y2="{height}" stroke="#666" stroke-dasharray="3,3"/>"##,
                cx = x + lw / 2,
                y1 = head + box_h
            );
            let _ = write!(
                svg,
                r##"<text x="{}" y="16" text-anchor="middle" font-weight="bold" fill="#eee">{}</text>"##,
                x + lw / 2,
                esc(&clip(name, chars))
            );
            let _ = write!(
                svg,
                r##"<rect x="{}" y="{head}" width="{}" height="{box_h}" rx="4" fill="#223" stroke="#88a"/>"##,
                x + 2,
                lw - 4
            );
            let mut y = head + 14;
            for t in lines {
                for part in wrap(t, chars) {
                    let _ = write!(
                        svg,
                        r##"<text x="{}" y="{y}" fill="#dde">{}</text>"##,
                        x + 6,
                        esc(&part)
                    );
                    y += 14;
                }
            }
        }
        let _ = write!(
            svg,
            r##"<text x="{sx}" y="{}" font-weight="bold" fill="#eee">steps</text>"##,
            top - 10
        );
        let step_chars = (sw - 4) * 10 / CHAR_W10;
        for (r, (before, a)) in shown.iter().enumerate() {
            let (lane, to) = self.lane_of(before, a);
            let y = top + r * row;
            let cx = 10 + lane * lw + lw / 2;
            let n = steps.len() - shown.len() + r + 1;
            if let Some(t) = to {
                let tx = 10 + t * lw + lw / 2;
                let _ = write!(
                    svg,
                    r##"<line class="handoff" x1="{cx}" y1="{y}" x2="{tx}" y2="{y}" stroke="#7ac"/><circle cx="{tx}" cy="{y}" r="3" fill="#7ac"/>"##
                );
            }
            // The step's number sits above its dot, clear of the hand-off arrow; its
            // text, in the steps column.
            let full = format!("{n}. {}", self.describe(a));
            let _ = write!(
                svg,
                r##"<circle cx="{cx}" cy="{y}" r="4" fill="#fc6"/><text x="{}" y="{}" text-anchor="end" fill="#fc6">{n}</text><text x="{sx}" y="{}" fill="#fc6"><title>{}</title>{}</text>"##,
                cx - 5,
                y - 5,
                y + 4,
                esc(&full),
                esc(&clip(&full, step_chars))
            );
        }
        if !bad.is_empty() {
            let _ = write!(
                svg,
                r##"<text x="{sx}" y="{}" fill="#f66" font-weight="bold">{}</text>"##,
                height - 6,
                esc(&clip(&format!("VIOLATED: {}", bad.join(", ")), step_chars))
            );
        }
        svg.push_str("</svg>");
        svg
    }

    pub fn svg_of(&self, path: Path<State<N>, Action>) -> String {
        self.svg(&path.into_vec())
    }
}

/// Width of a monospace glyph at font-size 11, in tenths of a pixel (0.6 em, rounded up).
const CHAR_W10: usize = 67;

/// `s` cut to `w` characters, with an ellipsis when cut.
fn clip(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_string();
    }
    let mut out: String = s.chars().take(w.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `s` in lines of at most `w` characters, broken at spaces; a longer word is split.
fn wrap(s: &str, w: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in s.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > w {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(word.drain(..w).collect());
        }
        let word: String = word.into_iter().collect();
        let len = cur.chars().count();
        if !cur.is_empty() && len + 1 + word.chars().count() > w {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    //! The lane view's geometry, read back from the SVG: no hand-off arrow runs
    //! through a label, no label runs over another lane, no two labels overlap.
    use crate::check::shortest_counterexamples;
    use crate::spec::{Kind, Spec};
    use crate::Quiesce;

    fn attr(el: &str, name: &str) -> Option<f64> {
        let el = format!(" {el}");
        let key = format!(" {name}=\"");
        let i = el.find(&key)? + key.len();
        el[i..].split('"').next()?.parse().ok()
    }

    /// (x0, x1, y0, y1, text) of every `<text>`, as a monospace font lays it out.
    fn texts(svg: &str) -> Vec<(f64, f64, f64, f64, String)> {
        svg.split("<text ")
            .skip(1)
            .map(|rest| {
                let (el, body) = rest.split_once('>').unwrap();
                let mut body = body.split("</text>").next().unwrap().to_string();
                if let (Some(a), Some(b)) = (body.find("<title>"), body.find("</title>")) {
                    body.replace_range(a..b + "</title>".len(), "");
                }
                let t = body
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&");
                // A monospace glyph at font-size 11 is 0.6 em wide.
                let w = t.chars().count() as f64 * 6.6;
                let (x, y) = (attr(el, "x").unwrap(), attr(el, "y").unwrap());
                let x0 = if el.contains("text-anchor=\"middle\"") {
                    x - w / 2.0
                } else if el.contains("text-anchor=\"end\"") {
                    x - w
                } else {
                    x
                };
                (x0, x0 + w, y - 9.0, y + 2.0, t)
            })
            .collect()
    }

    #[test]
    fn arrows_and_labels_do_not_collide() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/02-freeze-inside.toml");
        let spec = Spec::load(std::path::Path::new(path)).unwrap();
        let model = Quiesce::new(spec.protocol.clone(), Kind::Bio, spec.bounds);
        let names = std::collections::BTreeSet::from(["no_bypass"]);
        let (init, steps) = shortest_counterexamples(&model, &names)
            .remove("no_bypass")
            .expect("split brain");
        let mut p = Vec::new();
        let mut cur = init;
        for (a, next) in steps {
            p.push((cur, Some(a)));
            cur = next;
        }
        p.push((cur, None));
        let svg = model.svg(&p);
        let texts = texts(&svg);
        // Lane columns from the lane boxes; the steps column from its heading.
        let cols: Vec<(f64, f64)> = svg
            .split("<rect ")
            .skip(1)
            .filter(|el| el.contains("rx=\"4\""))
            .map(|el| {
                let x = attr(el, "x").unwrap() - 2.0;
                (x, x + attr(el, "width").unwrap() + 4.0)
            })
            .collect();
        let width = attr(&svg, "width").unwrap();
        let sx = texts.iter().find(|t| t.4 == "steps").map_or(width, |t| t.0);
        assert!(cols.len() >= 4, "{cols:?}");
        let arrows: Vec<(f64, f64, f64)> = svg
            .split("<line ")
            .skip(1)
            .filter(|el| attr(el, "y1") == attr(el, "y2"))
            .map(|el| {
                let (a, b) = (attr(el, "x1").unwrap(), attr(el, "x2").unwrap());
                (a.min(b), a.max(b), attr(el, "y1").unwrap())
            })
            .collect();
        assert!(!arrows.is_empty(), "the trace hands a bio to O");
        for t in &texts {
            let in_lane = cols.iter().any(|c| t.0 >= c.0 && t.1 <= c.1);
            let in_steps = t.0 >= sx && t.1 <= width;
            assert!(in_lane || in_steps, "label runs over a lane: {t:?}");
            for a in &arrows {
                let crosses = a.2 >= t.2 && a.2 <= t.3 && a.0 < t.1 && a.1 > t.0;
                assert!(!crosses, "arrow {a:?} runs through label {t:?}");
            }
        }
        for (i, a) in texts.iter().enumerate() {
            for b in &texts[i + 1..] {
                let overlap = a.0 < b.1 && b.0 < a.1 && a.2 < b.3 && b.2 < a.3;
                assert!(!overlap, "labels overlap: {a:?} and {b:?}");
            }
        }
    }
}
