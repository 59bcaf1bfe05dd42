//! The `quiesce` binary: exit codes, text and JSON output, bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn specs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs")
}

fn quiesce(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiesce"))
        .args(args)
        .output()
        .expect("runs")
}

fn spec(name: &str) -> String {
    specs().join(name).display().to_string()
}

#[test]
fn check_passes_when_expectations_hold() {
    let out = quiesce(&["check", &spec("02-freeze-inside.toml")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("freeze-inside") && text.contains("violates no_bypass"),
        "{text}"
    );
    // The counterexample is printed as numbered steps, one per line, with the state after each.
    assert!(text.contains("no_bypass violated in 13 steps"), "{text}");
    assert!(
        text.contains("   1. submitter 1: submit_bio(bio1.1)"),
        "{text}"
    );
    assert!(text.contains("controller 1: attach() returns 0"), "{text}");
    assert!(text.contains("#/steps/0/"), "{text}");
}

#[test]
fn check_fails_when_an_expectation_does_not_hold() {
    let dir = std::env::temp_dir().join(format!("quiesce-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(specs().join("02-freeze-inside.toml")).unwrap();
    let wrong = dir.join("wrong.toml");
    std::fs::write(
        &wrong,
        text.replace("bio = [\"no_bypass\"]", "bio = \"pass\""),
    )
    .unwrap();
    let out = quiesce(&["check", "-q", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(
        s.contains("UNEXPECTED") && s.contains("no_bypass is violated but expected to hold"),
        "{s}"
    );
}

#[test]
fn json_report_is_machine_readable() {
    let out = quiesce(&["check", "--json", &spec("06-no-marker.toml")]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["met"], true);
    let s = &v["specs"][0];
    assert_eq!(s["name"], "no-marker");
    assert_eq!(s["sha256"].as_str().unwrap().len(), 64);
    let k = &s["kinds"][0];
    assert_eq!(k["kind"], "request");
    assert_eq!(k["bounds"]["submitters"], 1);
    assert!(k["unique_states"].as_u64().unwrap() > 0);
    let rec = k["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "no_recursion")
        .unwrap();
    assert_eq!(rec["verdict"], "violated");
    assert!(!rec["trace"].as_array().unwrap().is_empty());
}

#[test]
fn bad_input_exits_2_and_names_the_place() {
    let dir = std::env::temp_dir().join(format!("quiesce-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[original\nkinds = []\n").unwrap();
    let out = quiesce(&[
        "check",
        bad.to_str().unwrap(),
        &spec("02-freeze-inside.toml"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml:2:"), "{err}");
    // One bad file does not hide the good file's results; the exit code is still 2.
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("freeze-inside"), "{text}");
    assert!(text.contains("violates no_bypass"), "{text}");

    let out = quiesce(&["check", "/nonexistent/spec.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read spec"));

    let out = quiesce(&["check", &spec("02-freeze-inside.toml"), "--submitters", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--submitters 9: submitters must be between 1 and 4, not 9"));
    let out = quiesce(&[
        "check",
        &spec("02-freeze-inside.toml"),
        "--submitters",
        "-1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--submitters -1: submitters must be between 1 and 4, not -1"));
}

#[test]
fn explore_rejects_a_bad_address() {
    let out = quiesce(&[
        "explore",
        &spec("02-freeze-inside.toml"),
        "--kind",
        "bio",
        "--addr",
        "256.0.0.1:99999",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}

#[test]
fn overrides_change_the_bounds() {
    let out = quiesce(&[
        "check",
        "--json",
        "--bios",
        "2",
        "--kind",
        "request",
        &spec("02-freeze-inside.toml"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let k = &v["specs"][0]["kinds"];
    assert_eq!(k.as_array().unwrap().len(), 1);
    assert_eq!(k[0]["bounds"]["bios"], 2);
    assert_eq!(
        k[0]["unique_states"], 15714,
        "2 bios a submitter, both symmetries"
    );
}

/// The Explorer serves the model over HTTP: its status names the properties, and a path of
/// action indices renders the kernel-named action that was taken.
#[test]
fn explore_serves_the_model() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_quiesce"))
        .args([
            "explore",
            &spec("02-freeze-inside.toml"),
            "--kind",
            "bio",
            "--addr",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    assert!(line.contains("Explorer for freeze-inside [bio]"), "{line}");
    let get = |path: &str| {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).unwrap();
        body
    };
    let status = get("/.status");
    assert!(
        status.contains("\"no_bypass\"") && status.contains("\"attach_unwinds\""),
        "{status}"
    );
    let states = get("/.states/0");
    assert!(
        states.contains("submitter 1: submit_bio(bio1.1)"),
        "{states}"
    );
    assert!(states.contains("controller 1: dm_create(I1)"), "{states}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Progress shows on a terminal (states, states/s, depth, elapsed) and not otherwise.
#[test]
fn progress_only_on_a_terminal() {
    let exe = env!("CARGO_BIN_EXE_quiesce");
    let spec = spec("04-converged.toml");
    // 7.2 M states, about 2 s here: ten times the engine's 200 ms between
    // progress reports, so the terminal is shown some.
    let args = format!("{exe} check -q {spec} --submitters 3 --kind bio");
    // `script` runs the command on a pseudo-terminal and copies what it shows.
    let tty = Command::new("script")
        .args(["-qec", &args, "/dev/null"])
        .output()
        .expect("script(1) runs");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(
        shown.contains("converged [bio]: ") && shown.contains("states/s, depth "),
        "{shown}"
    );
    let plain = quiesce(&["check", "-q", &spec, "--submitters", "3", "--kind", "bio"]);
    assert!(plain.status.success());
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("states/s"));
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("states/s"));
}

/// `gen` refuses a spec that violates a property: exit 1, the property named, nothing written.
#[test]
fn gen_refuses_a_flawed_spec_and_writes_nothing() {
    let out = std::env::temp_dir().join(format!("quiesce-gen-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let r = quiesce(&[
        "gen",
        &spec("02-freeze-inside.toml"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("refusing to generate") && err.contains("violates no_bypass"),
        "{err}"
    );
    assert!(!out.exists(), "nothing may be written");
}

/// `gen --check` fails with a diff when the committed crate drifted from the spec.
#[test]
fn gen_check_reports_drift_with_a_diff() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("quiesce-gen-drift-{}", std::process::id()));
    std::fs::create_dir_all(out.join("src")).unwrap();
    for f in ["Cargo.toml", "README.md", "src/lib.rs", "src/protocol.rs"] {
        std::fs::copy(root.join("generated").join(f), out.join(f)).unwrap();
    }
    let patches = out.join("patches");
    std::fs::create_dir_all(&patches).unwrap();
    let name = quiesce_codegen::chook::PATCH_NAME;
    std::fs::copy(root.join("kmod/patches").join(name), patches.join(name)).unwrap();
    let spec = spec("15-filter-module.toml");
    let pd = patches.to_str().unwrap();
    let check = |what: &str| {
        let o = quiesce(&[
            "gen",
            "--check",
            &spec,
            "--out",
            out.to_str().unwrap(),
            "--patch-dir",
            pd,
        ]);
        assert!(o.status.code().is_some(), "{what}");
        o
    };
    let ok = check("clean");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let p = out.join("src/protocol.rs");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replacen("    p.blk_mq_freeze_queue();\n", "", 1)).unwrap();
    let drift = check("crate drifted");
    assert_eq!(drift.status.code(), Some(1));
    let diff = String::from_utf8_lossy(&drift.stdout);
    assert!(diff.contains("+    p.blk_mq_freeze_queue();"), "{diff}");
    assert!(String::from_utf8_lossy(&drift.stderr).contains("differs from what"));
    std::fs::write(&p, text).unwrap();

    // The C route's patch drifts too: a hand edit that drops the marker is caught.
    let c = patches.join(name);
    let text = std::fs::read_to_string(&c).unwrap();
    std::fs::write(
        &c,
        text.replacen("+\tbio_set_flag(bio, BIO_INTERPOSED);\n", "", 1),
    )
    .unwrap();
    let drift = check("route drifted");
    assert_eq!(drift.status.code(), Some(1));
    let diff = String::from_utf8_lossy(&drift.stdout);
    assert!(
        diff.contains("++\tbio_set_flag(bio, BIO_INTERPOSED);"),
        "{diff}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn promela_names_the_kind_it_needs_and_spin_finds_the_violations() {
    let two = spec("04-converged.toml");
    let out = quiesce(&["promela", &two]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one with --kind"));

    let one = spec("06-no-marker.toml");
    let out = quiesce(&["promela", &one, "--kind", "bio"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not check kind `bio`"));

    // The rendering is Promela with one d_step per action, and SPIN on it finds
    // what quiesce finds in the protocol without a marker, by name, through its own
    // assertions; the spec expects exactly that, so the exit is 0, as with check.
    let out = quiesce(&["promela", &one, "--kind", "request"]);
    assert!(out.status.success());
    let pml = String::from_utf8_lossy(&out.stdout);
    assert!(pml.contains("active proctype quiesce()") && pml.contains("d_step"));
    let out = quiesce(&["promela", &one, "--kind", "request", "--spin", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["states"], 196);
    assert_eq!(v["complete"], true);
    assert_eq!(v["errors"], 2, "one assertion per violated property: {v}");
    assert_eq!(v["met"], true);
    let violated: Vec<&str> = v["violated"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert_eq!(violated, ["exactly_once", "no_recursion"]);
}

#[test]
fn promela_per_thread_renders_a_process_per_thread_and_spin_at_its_best_agrees() {
    let one = spec("02-freeze-inside.toml");
    let out = quiesce(&["promela", &one, "--kind", "bio", "--per-thread"]);
    assert!(out.status.success(), "{out:?}");
    let pml = String::from_utf8_lossy(&out.stdout);
    for p in [
        "submitter1",
        "submitter2",
        "controller1",
        "kworker",
        "completion",
        "finished",
    ] {
        assert!(
            pml.contains(&format!("active proctype {p}()")),
            "no process {p}"
        );
    }
    assert!(!pml.contains("active proctype quiesce()"));
    let args = ["promela", &one, "--kind", "bio", "--spin", "--json"];
    let plain = quiesce(&args);
    let best = quiesce(&[&args[..], &["--per-thread"]].concat());
    assert_eq!(best.status.code(), Some(0), "{best:?}");
    let v = |o: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&o.stdout).expect("json")
    };
    let (plain, best) = (v(&plain), v(&best));
    assert_eq!(best["violated"], serde_json::json!(["no_bypass"]));
    assert_eq!(best["violated"], plain["violated"]);
    assert_eq!(best["met"], true);
    assert!(best["states"].as_u64().unwrap() <= plain["states"].as_u64().unwrap());
}

#[test]
fn a_kind_filter_that_selects_nothing_is_an_error() {
    let out = quiesce(&["check", &spec("06-no-marker.toml"), "--kind", "bio"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--kind bio selects nothing"), "{err}");
    assert!(err.contains("checks request only"), "{err}");
    let out = quiesce(&[
        "check",
        "--json",
        &spec("06-no-marker.toml"),
        "--kind",
        "bio",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // In a batch where another spec has the kind, the skipped one is named, not silent.
    let out = quiesce(&[
        "check",
        &spec("06-no-marker.toml"),
        &spec("02-freeze-inside.toml"),
        "--kind",
        "bio",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no-marker") && text.contains("not checked"),
        "{text}"
    );
}

#[test]
fn overrides_that_change_nothing_are_reported() {
    let out = quiesce(&[
        "check",
        "-q",
        &spec("02-freeze-inside.toml"),
        "--failures",
        "3",
        "--submitters",
        "2",
        "--cycles",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--failures 3 changes nothing: the spec injects no failures"),
        "{err}"
    );
    assert!(err.contains("--submitters 2 changes nothing"), "{err}");
    assert!(!err.contains("--cycles"), "{err}");
    // The summary line shows the bounds used.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 2x1 1x2 f3 "), "{text}");
}

#[test]
fn the_summary_stays_aligned_for_long_names() {
    let dir = std::env::temp_dir().join(format!("quiesce-cli-long-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let long = dir.join("long.toml");
    let text = std::fs::read_to_string(spec("02-freeze-inside.toml"))
        .unwrap()
        .replace(
            "name = \"freeze-inside\"",
            "name = \"a-rather-long-spec-name-for-the-freeze-inside-variant\"",
        );
    std::fs::write(&long, text).unwrap();
    let out = quiesce(&[
        "check",
        "-q",
        long.to_str().unwrap(),
        &spec("06-no-marker.toml"),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let col = |l: &str, w: &str| l.find(w).unwrap_or_else(|| panic!("{w} in {l}"));
    for w in [" states", "as expected"] {
        let at: Vec<usize> = lines.iter().map(|l| col(l, w)).collect();
        assert!(at.windows(2).all(|p| p[0] == p[1]), "{w}: {text}");
    }
}

/// `quiesce check -q` of the converged spec's bio kind with 3 submitters and
/// `extra`, a heartbeat line at every progress report.
fn converged_bio_with_heartbeats(extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quiesce"));
    cmd.args(["check", "-q", &spec("04-converged.toml")])
        .args(["--kind", "bio", "--submitters", "3"])
        .args(extra)
        .env("QUIESCE_HEARTBEAT_SECS", "0");
    cmd
}

#[test]
fn a_long_check_without_a_terminal_prints_a_heartbeat() {
    // 3 submitters: 7.2 M states, about 2 s here, ten times the engine's
    // 200 ms between progress reports (the spec's own bounds now take 0.19 s).
    let out = converged_bio_with_heartbeats(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("... still checking converged [bio]: "),
        "{err}"
    );
}

#[test]
fn every_counterexample_says_why_it_fails() {
    let out = quiesce(&["check", &spec("01-v7-as-posted.toml"), "--kind", "bio"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let blocks: Vec<&str> = text.split("\n\n").skip(1).collect();
    assert_eq!(blocks.len(), 4, "{text}");
    let mut reasons = std::collections::BTreeSet::new();
    for b in blocks {
        let why = b
            .lines()
            .find_map(|l| l.trim().strip_prefix("why: "))
            .unwrap_or_else(|| panic!("no reason in {b}"));
        reasons.insert(why.to_string());
    }
    // Four properties, four different reasons.
    assert_eq!(reasons.len(), 4, "{reasons:#?}");
    assert!(reasons
        .iter()
        .any(|r| r.contains("uses I1#1 after it was freed")));
    assert!(reasons
        .iter()
        .any(|r| r.contains("bio1.1 is inside O without having passed I1")));
}

#[test]
fn spin_asserts_the_properties_keeps_a_trail_and_exits_by_the_expectation() {
    let dir = std::env::temp_dir().join(format!("quiesce-cli-spin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keep = dir.join("run");
    let one = spec("06-no-marker.toml");
    let out = quiesce(&[
        "promela",
        &one,
        "--kind",
        "request",
        "--spin",
        "--keep",
        keep.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 errors: violates exactly_once, no_recursion"),
        "{text}"
    );
    assert!(text.contains("model.pml.trail"), "{text}");
    // SPIN's own replay of the trail ends at a violated assertion.
    let replay = Command::new("spin")
        .args(["-t", "-p", "model.pml"])
        .current_dir(&keep)
        .output()
        .expect("spin runs");
    let r = String::from_utf8_lossy(&replay.stdout);
    assert!(r.contains("assertion violated"), "{r}");

    // The same protocol with a spec that claims it passes: SPIN disagrees, exit 1.
    let claim = std::fs::read_to_string(&one).unwrap().replace(
        "request = [\"no_recursion\", \"exactly_once\"]",
        "all = \"pass\"",
    );
    assert!(
        claim.contains("all = \"pass\""),
        "the spec's expectation line moved"
    );
    let wrong = dir.join("claims-pass.toml");
    std::fs::write(&wrong, claim).unwrap();
    let out = quiesce(&[
        "promela",
        wrong.to_str().unwrap(),
        "--kind",
        "request",
        "--spin",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("NOT as expected: exactly_once is violated but expected to hold"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explore_needs_a_kind_for_a_two_kind_spec() {
    let out = quiesce(&[
        "explore",
        &spec("04-converged.toml"),
        "--addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checks kinds request and bio; choose one with --kind"),
        "{err}"
    );
}

/// Real reports (a pass, a flawed spec with traces, a bad file beside a good one, an
/// override note, an incomplete search) against the documented schema.
#[test]
fn the_json_report_follows_its_documented_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/report.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is valid");
    let missing = specs().join("no-such-spec.toml");
    let runs: [Vec<String>; 4] = [
        vec![spec("04-converged.toml"), "--kind".into(), "request".into()],
        vec![spec("01-v7-as-posted.toml"), spec("02-freeze-inside.toml")],
        vec![spec("06-no-marker.toml"), missing.display().to_string()],
        vec![
            spec("02-freeze-inside.toml"),
            "--failures".into(),
            "1".into(),
            "--mem-limit".into(),
            "1".into(),
        ],
    ];
    let mut seen_violated = false;
    let mut seen_null_pos = false;
    let mut seen_incomplete = false;
    for args in &runs {
        let mut a = vec!["check", "--json"];
        a.extend(args.iter().map(String::as_str));
        let out = quiesce(&a);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let errs: Vec<String> = validator
            .iter_errors(&v)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errs.is_empty(), "{args:?}: {}", errs.join("\n"));
        let text = v.to_string();
        seen_violated |= text.contains("\"verdict\":\"violated\"");
        seen_null_pos |= text.contains("\"line\":null");
        seen_incomplete |= text.contains("\"incomplete\":");
    }
    assert!(
        seen_violated && seen_null_pos,
        "the runs cover traces and file errors"
    );
    let _ = seen_incomplete;

    // The schema is strict: a field it does not know is refused.
    let out = quiesce(&[
        "check",
        "--json",
        &spec("04-converged.toml"),
        "--kind",
        "bio",
    ]);
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["specs"][0]["kinds"][0]["surprise"] = serde_json::json!(1);
    assert!(!validator.is_valid(&v));
}

#[test]
fn a_missing_default_spec_is_said_to_be_the_default() {
    for (args, default) in [
        (&["bench"][..], "04-converged"),
        (&["mutants", "--model-only"][..], "15-filter-module"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_quiesce"))
            .args(args)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!(
            "no spec given, and the default model/specs/{default}.toml does not exist here"
        );
        assert!(err.contains(&want), "{args:?}: {err}");
    }
}

/// Ctrl-C during a long check: the partial result is printed, marked incomplete,
/// and it is never a pass. The first heartbeat line says the search is under way.
#[test]
fn ctrl_c_prints_a_partial_result_marked_incomplete() {
    use std::io::{BufRead, BufReader};
    let mut child = converged_bio_with_heartbeats(&["--bios", "2", "--cycles", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("still checking") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "no heartbeat");
    }
    // SAFETY: the child is ours and not yet reaped, so its pid names it.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("incomplete"), "{stdout}");
    assert!(!stdout.contains("as expected"), "{stdout}");
}

/// `quiesce bench SPEC --json --size 2,1,1,1,1 ARGS`, which must succeed.
fn bench_json(spec: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench", spec, "--json", "--size", "2,1,1,1,1"];
    all.extend_from_slice(args);
    let out = quiesce(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench --json prints JSON")
}

#[test]
fn bench_reports_the_median_of_its_repeated_runs() {
    let converged = spec("04-converged.toml");
    let v = bench_json(
        &converged,
        &["--no-symmetry", "--kind", "request", "--repeat", "3"],
    );
    let rows = v["rows"].as_array().unwrap();
    let checkers: Vec<&str> = rows
        .iter()
        .map(|r| r["checker"].as_str().unwrap())
        .collect();
    assert_eq!(checkers, ["quiesce", "quiesce+sym"]);
    for r in rows {
        let mut runs: Vec<f64> = r["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        assert_eq!(runs.len(), 3, "{r}");
        runs.sort_by(f64::total_cmp);
        assert_eq!(r["seconds"].as_f64().unwrap(), runs[1], "{r}");
        let rate = r["unique_states"].as_f64().unwrap() / runs[1];
        assert!((r["states_per_second"].as_f64().unwrap() - rate).abs() < 1e-6 * rate);
    }
    // Symmetry merges the two submitters' states: fewer states, never more.
    assert!(rows[1]["unique_states"].as_u64() < rows[0]["unique_states"].as_u64());

    let zero = quiesce(&["bench", &converged, "--size", "1,1,1,1,1", "--repeat", "0"]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--repeat"));
}

#[test]
fn bench_with_spin_interleaves_the_checkers_and_agrees_on_states() {
    let converged = spec("04-converged.toml");
    let v = bench_json(&converged, &["--spin", "--kind", "bio", "--repeat", "2"]);
    assert_eq!(v["disagreements"], serde_json::json!([]));
    let rows = v["rows"].as_array().unwrap();
    let by = |name: &str| rows.iter().find(|r| r["checker"] == name).unwrap();
    let (plain, sym, spin) = (by("quiesce"), by("quiesce+sym"), by("spin"));
    for r in [plain, sym, spin, by("spin-best")] {
        assert_eq!(r["runs"].as_array().unwrap().len(), 2, "{r}");
    }
    // The same state space, state for state.
    assert_eq!(plain["unique_states"], spin["unique_states"]);
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
    let rate = f(plain, "states_per_second") / f(spin, "states_per_second");
    assert!((f(plain, "vs_spin") - rate).abs() < 1e-9 * rate);
    let speedup = f(spin, "seconds") / f(sym, "seconds");
    assert!((f(sym, "vs_spin") - speedup).abs() < 1e-9 * speedup);
    assert!(
        f(sym, "symmetry_factor") > 1.0,
        "two submitters are interchangeable"
    );
}
