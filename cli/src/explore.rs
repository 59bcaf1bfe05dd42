//! `quiesce explore`: the Stateright Explorer on one spec and kind.
//!
//! Stateright's own server runs on a private port; a thin front on the public
//! address passes its pages through and makes four of its answers agree with
//! `quiesce check`:
//! - each property's link opens the same shortest counterexample the CLI prints
//!   (quiesce's breadth-first search), not whichever path Stateright met first,
//!   and each sanity property's link a shortest example;
//! - the page names the spec and kind, and says why its state count differs from
//!   the CLI's (no symmetry reduction here);
//! - the path list is numbered as the CLI numbers steps (Pre-init is -1, Init 0);
//! - "Complete State" is quiesce's description of the state, not Rust `Debug`.

use crate::{exit2, load, BoundArgs};
use quiesce_model::check::{explorer_path, shortest_counterexamples};
use quiesce_model::model::State;
use quiesce_model::spec::{Kind, LIVENESS, SAFETY, SANITY};
use quiesce_model::Quiesce;
use serde_json::Value;
use stateright::{Checker, Model};
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// What the front needs to answer.
struct Front {
    model: Quiesce,
    inner: SocketAddr,
    /// Shortest counterexample of each violated safety property, and shortest example
    /// of each reached sanity property, as an Explorer path.
    shortest: HashMap<&'static str, String>,
    name: String,
    file: String,
    kind: Kind,
}

/// Run `quiesce explore`.
pub fn run(
    spec: &Path,
    addr: &str,
    counterexample: Option<String>,
    bounds: &BoundArgs,
) -> Result<ExitCode, ExitCode> {
    let spec = load(spec)?;
    let b = spec.bounds.with(&bounds.overrides()).map_err(exit2)?;
    let kind = crate::one_kind(&spec, bounds.kind)?;
    if let Some(name) = &counterexample {
        if !SAFETY.contains(&name.as_str()) && !LIVENESS.contains(&name.as_str()) {
            eprintln!(
                "error: unknown property `{name}`; safety properties: {}; liveness: {}",
                SAFETY.join(", "),
                LIVENESS.join(", ")
            );
            return Err(ExitCode::from(2));
        }
    }
    let listen_err = |e: &dyn std::fmt::Display| {
        eprintln!("error: cannot listen on {addr}: {e}");
        ExitCode::from(2)
    };
    let server = tiny_http::Server::http(addr).map_err(|e| listen_err(&e))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| listen_err(&"not an IP address"))?;
    let inner = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| listen_err(&e))?;

    let model = Quiesce::new(spec.protocol.clone(), kind, b);
    // Counterexamples and the sanity properties' examples, shortest first.
    let all: BTreeSet<&'static str> = SAFETY.iter().chain(SANITY.iter()).copied().collect();
    let mut shortest: HashMap<&'static str, String> = shortest_counterexamples(&model, &all)
        .iter()
        .map(|(p, steps)| (*p, explorer_path(&model, steps)))
        .collect();
    // A liveness counterexample opens at the state where its loop begins (the
    // lasso's last step returns there).
    let wants_live = counterexample
        .as_deref()
        .is_some_and(|n| LIVENESS.contains(&n));
    if spec.protocol.may_loop() || wants_live {
        let live = quiesce_model::live::check(&model, quiesce_model::check::default_mem_limit());
        for v in &live.violations {
            let mut steps = v.lasso.prefix.clone();
            steps.extend(v.lasso.cycle.iter().cloned());
            shortest.insert(
                v.property,
                explorer_path(&model, &(v.lasso.init.clone(), steps)),
            );
        }
    }
    let fragment = match &counterexample {
        None => String::new(),
        Some(name) => match shortest.get(name.as_str()) {
            Some(path) => format!("#/steps/{path}"),
            None => {
                eprintln!(
                    "error: {} [{kind}] satisfies {name}: there is no counterexample",
                    spec.name
                );
                return Err(ExitCode::from(1));
            }
        },
    };
    let front = Arc::new(Front {
        model: model.clone(),
        inner,
        shortest,
        name: spec.name.clone(),
        file: spec.path.display().to_string(),
        kind,
    });

    // Stateright's server binds inside `serve`, which gives no signal: wait until it
    // accepts, start its search so that the property panel fills in, then announce.
    std::thread::spawn(move || {
        let checker = model.checker().threads(1).serve(inner);
        let _ = checker.unique_state_count();
    });
    let up = (0..600).any(|_| {
        std::net::TcpStream::connect(inner).is_ok() || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            false
        }
    });
    if !up {
        eprintln!("error: the Explorer did not start listening on {inner}");
        return Err(ExitCode::from(2));
    }
    std::thread::spawn(move || {
        let _ = ureq::post(&format!("http://{inner}/.runtocompletion")).call();
    });
    eprintln!(
        "Explorer for {} [{kind}] at http://{bound}/{fragment}",
        spec.name
    );
    for rq in server.incoming_requests() {
        let front = Arc::clone(&front);
        std::thread::spawn(move || front.answer(rq));
    }
    Ok(ExitCode::SUCCESS)
}

impl Front {
    fn answer(&self, rq: tiny_http::Request) {
        let url = rq.url().to_string();
        let post = *rq.method() == tiny_http::Method::Post;
        let reply = match self.fetch(&url, post) {
            Err((code, body)) => (code, body, None),
            Ok(body) => {
                let path = url.split('?').next().unwrap_or("");
                match path {
                    "/" => match self.index(&String::from_utf8_lossy(&body)) {
                        Ok(page) => (200, page.into_bytes(), Some("text/html; charset=utf-8")),
                        Err(e) => (500, e.into_bytes(), None),
                    },
                    "/.status" => self.json(&body, |v| self.status(v)),
                    p if p.starts_with("/.states") => self.json(&body, |v| self.states(p, v)),
                    p if p.ends_with(".js") => (200, body, Some("text/javascript")),
                    p if p.ends_with(".css") => (200, body, Some("text/css")),
                    _ => (200, body, None),
                }
            }
        };
        let (code, body, ctype) = reply;
        let mut resp = tiny_http::Response::from_data(body).with_status_code(code);
        if let Some(t) = ctype.and_then(|t| tiny_http::Header::from_bytes("Content-Type", t).ok()) {
            resp = resp.with_header(t);
        }
        let _ = rq.respond(resp);
    }

    /// The same request to Stateright's server: its body, or its status and body.
    fn fetch(&self, url: &str, post: bool) -> Result<Vec<u8>, (u16, Vec<u8>)> {
        let full = format!("http://{}{url}", self.inner);
        let r = if post {
            ureq::post(&full).call()
        } else {
            ureq::get(&full).call()
        };
        let read = |r: ureq::Response| {
            let mut b = Vec::new();
            let _ = r.into_reader().read_to_end(&mut b);
            b
        };
        match r {
            Ok(r) => Ok(read(r)),
            Err(ureq::Error::Status(code, r)) => Err((code, read(r))),
            Err(e) => Err((
                502,
                format!("the Explorer behind this page: {e}").into_bytes(),
            )),
        }
    }

    fn json(
        &self,
        body: &[u8],
        patch: impl FnOnce(&mut Value),
    ) -> (u16, Vec<u8>, Option<&'static str>) {
        match serde_json::from_slice::<Value>(body) {
            Ok(mut v) => {
                patch(&mut v);
                (
                    200,
                    serde_json::to_vec(&v).expect("serialises"),
                    Some("application/json"),
                )
            }
            Err(e) => (502, format!("unexpected answer: {e}").into_bytes(), None),
        }
    }

    /// Stateright's page, naming the spec and kind, with the CLI's step numbers.
    fn index(&self, page: &str) -> Result<String, String> {
        let title = format!("{} [{}]", esc(&self.name), self.kind);
        let edits = [
            (
                "<title>Stateright Explorer</title>",
                format!("<title>{title}: quiesce explore</title>"),
            ),
            (
                "<h1><a href=\"/\">Stateright Explorer</a></h1>",
                format!(
                    "<h1><a href=\"/\">{title}</a> <small>{}: quiesce on the Stateright Explorer</small></h1>",
                    esc(&self.file)
                ),
            ),
            (
                // Pre-init is -1 and Init 0, so that step n here is step n of the CLI.
                "<ol class=\"path-list\"",
                "<ol class=\"path-list\" start=\"-1\"".to_string(),
            ),
            (
                "<label>Max Depth:</label>",
                "<label>Counted:</label>\n                    <span class=\"quiesce-count-note\">without symmetry reduction; \
                 quiesce check reduces over the interchangeable submitters and their bios, so it counts fewer states \
                 (quiesce check --no-symmetry counts these)</span>\n                </li>\n                <li>\n                    \
                 <label>Max Depth:</label>"
                    .to_string(),
            ),
        ];
        let mut out = page.to_string();
        for (from, to) in edits {
            if !out.contains(from) {
                return Err(format!(
                    "quiesce explore: Stateright's page no longer has `{from}`"
                ));
            }
            out = out.replacen(from, &to, 1);
        }
        Ok(out)
    }

    fn properties(&self, props: &mut Value) {
        for p in props.as_array_mut().into_iter().flatten() {
            let path = p[1].as_str().and_then(|n| self.shortest.get(n));
            if let Some(path) = path {
                p[2] = Value::String(path.clone());
            }
        }
    }

    fn status(&self, v: &mut Value) {
        v["model"] = Value::String(format!("{} [{}], {}", self.name, self.kind, self.file));
        self.properties(&mut v["properties"]);
    }

    /// The next states of a path: quiesce's description in place of `Debug`.
    fn states(&self, path: &str, v: &mut Value) {
        let Some(next) = self.next_states(path) else {
            return;
        };
        for (view, state) in v.as_array_mut().into_iter().flatten().zip(next) {
            self.properties(&mut view["properties"]);
            if let (Some(s), Some(_)) = (state, view.get("state")) {
                let fp = view["fingerprint"].as_str().unwrap_or("").to_string();
                view["state"] = Value::String(format!(
                    "{}\n\n{}\nfingerprint {fp}",
                    self.model.summary(&s),
                    self.model.describe_state(&s)
                ));
            }
        }
    }

    /// The states Stateright lists for `/.states/i/j/...`, in its order: the initial
    /// states for an empty path, else one per action enabled at the path's end (None
    /// where the action leads nowhere).
    fn next_states(&self, path: &str) -> Option<Vec<Option<State>>> {
        let idx: Vec<usize> = path
            .trim_start_matches("/.states")
            .split('/')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let inits = self.model.init_states();
        let Some((first, rest)) = idx.split_first() else {
            return Some(inits.into_iter().map(Some).collect());
        };
        let mut s = inits.get(*first)?.clone();
        let mut acts = Vec::new();
        for &i in rest {
            acts.clear();
            self.model.actions(&s, &mut acts);
            s = self.model.next_state(&s, *acts.get(i)?)?;
        }
        acts.clear();
        self.model.actions(&s, &mut acts);
        Some(
            acts.into_iter()
                .map(|a| self.model.next_state(&s, a))
                .collect(),
        )
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
