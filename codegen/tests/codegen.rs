//! Codegen: golden files, the gate, determinism, template errors.

use quiesce_codegen::{check, drift, gate, render, render_template_from, GenError};
use quiesce_model::Spec;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(p: &Path) -> Spec {
    Spec::load(p).unwrap_or_else(|e| panic!("{e}"))
}

fn render_spec(spec: &Spec) -> Vec<(PathBuf, String)> {
    let report = check(spec).unwrap();
    render(spec, &report).unwrap_or_else(|e| panic!("{e}"))
}

/// The committed generated/ is exactly what the kernel spec renders.
#[test]
fn generated_matches_the_kernel_spec() {
    let spec = load(&root().join("model/specs/15-filter-module.toml"));
    let files = render_spec(&spec);
    let diffs = drift(&root().join("generated"), &files);
    assert!(
        diffs.is_empty(),
        "generated/ drifted:\n{}",
        diffs.join("\n")
    );
}

/// Golden files of the templates on a small spec (set QUIESCE_BLESS=1 to rewrite them).
#[test]
fn golden_mini() {
    let spec = load(&root().join("codegen/tests/specs/mini.toml"));
    let files = render_spec(&spec);
    let dir = root().join("codegen/tests/golden/mini");
    if std::env::var_os("QUIESCE_BLESS").is_some() {
        quiesce_codegen::write(&dir, &files).unwrap();
    }
    let diffs = drift(&dir, &files);
    assert!(
        diffs.is_empty(),
        "golden files differ:\n{}",
        diffs.join("\n")
    );
    let proto = &files
        .iter()
        .find(|(p, _)| p.ends_with("protocol.rs"))
        .unwrap()
        .1;
    // The unwinding the checker verified: a failed exclusive open frees I.
    assert!(proto.contains("if let Err(e) = p.blkdev_get_excl() {\n        p.dm_destroy();\n        return Err(e);"), "{proto}");
    assert!(proto.contains("(true, true) => Route::ToOriginal"));
    assert!(proto.contains("(false, true) => Route::ToInterposer"));
    assert!(
        !proto.contains("Kind::Bio"),
        "the mini spec checks blk-mq only"
    );
}

#[test]
fn output_is_deterministic() {
    let spec = load(&root().join("codegen/tests/specs/mini.toml"));
    let a = render_spec(&spec);
    let b = render_spec(&spec);
    assert_eq!(a, b);
}

#[test]
fn a_flawed_spec_is_refused() {
    let spec = load(&root().join("model/specs/02-freeze-inside.toml"));
    let report = check(&spec).unwrap();
    let err = render(&spec, &report).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GenError::Refused(_)));
    assert!(
        msg.contains("freeze-inside [bio] violates no_bypass"),
        "{msg}"
    );
    assert!(
        msg.contains("13 steps") && msg.contains("#/steps/0/"),
        "{msg}"
    );
}

#[test]
fn a_tampered_report_is_refused() {
    let spec = load(&root().join("codegen/tests/specs/mini.toml"));
    let mut report = check(&spec).unwrap();
    report.sha256 = "0".repeat(64);
    let msg = gate(&spec, &report).unwrap_err().to_string();
    assert!(msg.contains("is for spec sha256 0000"), "{msg}");
    // A report at other bounds does not count either.
    let mut report = check(&spec).unwrap();
    report.kinds[0].bounds.submitters = 3;
    let msg = gate(&spec, &report).unwrap_err().to_string();
    assert!(msg.contains("other bounds"), "{msg}");
}

/// Reordering attach changes the output when the new order is still correct, and is
/// refused when it is not.
#[test]
fn attach_order_drives_the_output() {
    let base = std::fs::read_to_string(root().join("codegen/tests/specs/mini.toml")).unwrap();
    let dir = std::env::temp_dir().join(format!("quiesce-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Still correct: freeze O before creating I.
    let ok = base.replace(
        "  \"dm_create(I)\",\n  \"blkdev_get_excl(I)\",\n  \"blk_mq_freeze_queue(O)\",",
        "  \"blk_mq_freeze_queue(O)\",\n  \"dm_create(I)\",\n  \"blkdev_get_excl(I)\",",
    );
    assert_ne!(ok, base);
    let p = dir.join("ok.toml");
    std::fs::write(&p, &ok).unwrap();
    let a = render_spec(&load(&root().join("codegen/tests/specs/mini.toml")));
    let b = render_spec(&load(&p));
    let pa = &a
        .iter()
        .find(|(f, _)| f.ends_with("protocol.rs"))
        .unwrap()
        .1;
    let pb = &b
        .iter()
        .find(|(f, _)| f.ends_with("protocol.rs"))
        .unwrap()
        .1;
    assert_ne!(pa, pb);
    assert!(pb.contains("// 0: blk_mq_freeze_queue(O)\n    p.blk_mq_freeze_queue();\n    // 1: dm_create(I)\n    if let Err(e) = p.dm_create() {\n        p.blk_mq_unfreeze_queue();"), "{pb}");

    // Wrong: publish the pointer after the freeze has been dropped again. (Publishing it
    // before the freeze is right on blk-mq: the drain then waits for every reader.)
    let bad = base.replace(
        "  \"cmpxchg_interposer(O, I)\",\n  \"blk_mq_unfreeze_queue(O)\",",
        "  \"blk_mq_unfreeze_queue(O)\",\n  \"cmpxchg_interposer(O, I)\",",
    );
    assert_ne!(bad, base);
    let p = dir.join("bad.toml");
    std::fs::write(&p, &bad).unwrap();
    let spec = load(&p);
    let msg = render(&spec, &check(&spec).unwrap())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("violates no_bypass"), "{msg}");
}

#[test]
fn template_errors_name_the_template_and_line() {
    let dir = std::env::temp_dir().join(format!("quiesce-tpl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("broken.rs.tera"),
        "// line 1\n// line 2\n{% for x in %}\n",
    )
    .unwrap();
    let err = render_template_from(&dir, "broken.rs.tera", &tera::Context::new()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("template ") && msg.contains("broken.rs.tera"),
        "{msg}"
    );
    assert!(msg.contains("3:"), "no line in: {msg}");
}

/// Everything the verdict depends on is in the generated header: bounds, kinds,
/// filesystem, the interposer kind, marker, the failures injected, and the search's symmetry.
#[test]
fn the_header_names_every_assumption_of_the_proof() {
    let spec = load(&root().join("model/specs/15-filter-module.toml"));
    let files = render_spec(&spec);
    let (_, text) = files
        .iter()
        .find(|(p, _)| p.ends_with("src/protocol.rs"))
        .expect("protocol.rs");
    let head: String = text
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    for want in [
        "- bounds: submitters=2 bios=1 controllers=2 cycles=2 failures=2 freezers=0 remover=true",
        "- assumptions: kinds=request,bio,bio_sync filesystem=true interposer=filter marker=bio_flag clone_inherits=true",
        "- injected failures (at most 2 a run): filter_alloc(I), try_module_get(I->owner)",
        "- search: symmetry over submitters and their bios=true",
    ] {
        assert!(head.contains(want), "header lacks `{want}`:\n{head}");
    }
}

/// A spec that passed but reads the pointer under RCU: the module's hook cannot run
/// it, so nothing is rendered, and the refusal names the step.
#[test]
fn an_rcu_read_side_that_passed_is_refused_by_name() {
    let spec = load(&root().join("model/specs/18-rcu-read-side.toml"));
    let report = check(&spec).unwrap();
    let err = render(&spec, &report).unwrap_err();
    assert!(matches!(err, GenError::Refused(_)));
    let msg = err.to_string();
    assert!(msg.contains("hot path step `rcu_read_lock`"), "{msg}");
}

/// Specs that passed with an interposer behaviour the module does not have (a
/// filter that parks bios, workers that set a task marker, a check on the
/// passthrough path the kernel patch does not hook): nothing is rendered, and
/// the refusal names the key.
#[test]
fn a_parking_filter_or_marking_workers_are_refused_by_name() {
    for (file, key) in [
        ("22-filter-parks.toml", "[interposer] park"),
        ("08c-task-marker-worker-marks.toml", "[marker] worker_marks"),
        ("27-passthrough-refused.toml", "[protocol] passthrough"),
        ("29-filter-refcount.toml", "hot path step `filter_get`"),
    ] {
        let spec = load(&root().join("model/specs").join(file));
        let report = check(&spec).unwrap();
        let err = render(&spec, &report).unwrap_err();
        assert!(matches!(err, GenError::Refused(_)), "{file}");
        let msg = err.to_string();
        assert!(msg.contains(key), "{file}: {msg}");
    }
}

/// The C hook runs inside the reference the block layer takes with
/// bio_queue_enter: a spec whose hook enters with blk_queue_enter is not
/// rendered even when it passed, and the refusal says why.
#[test]
fn a_hook_entering_with_blk_queue_enter_is_refused() {
    let spec = load(&root().join("model/specs/23-nowait.toml"));
    let text = std::fs::read_to_string(&spec.path)
        .unwrap()
        .replacen("  \"bio_queue_enter\",\n", "  \"blk_queue_enter\",\n", 1)
        // Without REQ_NOWAIT submitters the protocol passes: the refusal is gen's own.
        .replacen(
            "paths = [\"submit_bio\", \"nowait\"]",
            "paths = [\"submit_bio\"]",
            1,
        );
    let spec = quiesce_model::spec::Spec::parse(&spec.path, &text).unwrap();
    let report = check(&spec).unwrap();
    let err = render(&spec, &report).unwrap_err();
    assert!(matches!(err, GenError::Refused(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("hot path step `blk_queue_enter`") && msg.contains("bio_queue_enter"),
        "{msg}"
    );
}

/// A hook that owns a task marker's lifetime (`clear_marker`) is not rendered
/// even when it passed (here: an I that never defers, so the clearing clone
/// always comes back), and the refusal names the step.
#[test]
fn a_hook_owned_task_marker_is_refused_by_name() {
    let path = root().join("model/specs/24b-task-marker-clear-in-clone.toml");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "  \"dm_suspend(I)\",\n  \"dm_resume(I)\",\n",
        "",
        1,
    );
    let spec = quiesce_model::spec::Spec::parse(&path, &text).unwrap();
    let report = check(&spec).unwrap();
    let err = render(&spec, &report).unwrap_err();
    assert!(matches!(err, GenError::Refused(_)));
    let msg = err.to_string();
    assert!(msg.contains("hot path step `clear_marker`"), "{msg}");
}
