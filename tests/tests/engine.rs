//! quiesce's own search engine against Stateright's checker on the same model:
//! equal unique-state counts and equal verdicts on every shipped spec and kind,
//! with and without symmetry; and a run cut short is reported incomplete.

use quiesce_model::check::{check_kind, CheckOptions, Engine};
use quiesce_model::spec::{Kind, Overrides, Spec};
use std::path::PathBuf;

fn specs() -> Vec<Spec> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files.iter().map(|p| Spec::load(p).unwrap()).collect()
}

#[test]
fn engines_agree_on_every_spec_with_and_without_symmetry() {
    let mut runs = 0;
    for spec in specs() {
        for &kind in &spec.kinds {
            for symmetry in [true, false] {
                let opts = |engine| CheckOptions {
                    engine,
                    symmetry,
                    traces: false,
                    ..CheckOptions::default()
                };
                let q = check_kind(&spec, kind, &opts(Engine::Quiesce)).unwrap();
                let s = check_kind(&spec, kind, &opts(Engine::Stateright)).unwrap();
                let what = format!("{} [{kind}] symmetry={symmetry}", spec.name);
                assert_eq!(q.unique_states, s.unique_states, "{what}");
                assert_eq!(q.violated(), s.violated(), "{what}");
                let reached = |r: &quiesce_model::KindReport| -> Vec<&str> {
                    r.properties.iter().map(|p| p.verdict).collect()
                };
                assert_eq!(reached(&q), reached(&s), "{what}");
                assert!(q.incomplete.is_none() && q.met == s.met, "{what}");
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 226, "every shipped spec and kind, twice");
}

#[test]
fn both_search_orders_and_thread_counts_find_the_same_states() {
    let spec = specs().into_iter().find(|s| s.name == "converged").unwrap();
    let bounds = Overrides {
        controllers: Some(1),
        ..Overrides::default()
    };
    let mut counts = Vec::new();
    for threads in [1, 2] {
        for symmetry in [true, false] {
            let r = check_kind(
                &spec,
                Kind::Bio,
                &CheckOptions {
                    overrides: bounds,
                    threads,
                    symmetry,
                    traces: false,
                    ..CheckOptions::default()
                },
            )
            .unwrap();
            counts.push((symmetry, r.unique_states));
        }
    }
    assert_eq!(counts[0], counts[2]);
    assert_eq!(counts[1], counts[3]);
    assert!(counts[0].1 < counts[1].1, "symmetry reduces: {counts:?}");
}

#[test]
fn a_search_past_its_memory_limit_is_incomplete_and_not_a_pass() {
    let spec = specs().into_iter().find(|s| s.name == "converged").unwrap();
    let r = check_kind(
        &spec,
        Kind::Request,
        &CheckOptions {
            mem_limit: 4 << 20,
            traces: false,
            ..CheckOptions::default()
        },
    )
    .unwrap();
    let why = r.incomplete.as_deref().expect("incomplete");
    assert!(why.contains("memory limit (4 MiB)"), "{why}");
    assert!(!r.met, "an incomplete search meets no expectation");
    assert!(r.mismatch.iter().any(|m| m.contains("incomplete")));
}

/// One submitter's bios are interchangeable too: with two or three bios a
/// submitter, both engines find the same orbits, symmetry reduces even with
/// one submitter, and every spec's verdict is the same with and without it.
#[test]
fn a_submitters_bios_are_symmetric_in_both_engines() {
    let mut runs = 0;
    for spec in specs() {
        // Each bio of a splitting O takes two passes and leaves a front in O:
        // at 2x2 its state space is some 90 M states; 2x1 still holds two
        // interchangeable submitters.
        let sizes = if spec.protocol.split {
            [(1, 3, 1, 1, 0), (2, 1, 1, 1, 0)]
        } else {
            [(1, 3, 1, 1, 0), (2, 2, 1, 1, 1)]
        };
        for &kind in &spec.kinds {
            for (submitters, bios, controllers, cycles, failures) in sizes {
                let overrides = Overrides::size((submitters, bios, controllers, cycles, failures));
                let run = |engine, symmetry| {
                    let opts = CheckOptions {
                        engine,
                        symmetry,
                        overrides,
                        traces: false,
                        ..CheckOptions::default()
                    };
                    check_kind(&spec, kind, &opts).unwrap()
                };
                let what = format!("{} [{kind}] {submitters}x{bios}", spec.name);
                let q = run(Engine::Quiesce, true);
                let s = run(Engine::Stateright, true);
                let plain = run(Engine::Quiesce, false);
                assert_eq!(q.unique_states, s.unique_states, "{what}");
                assert_eq!(
                    q.violated(),
                    plain.violated(),
                    "{what}: symmetry changed the verdict"
                );
                assert_eq!(s.violated(), plain.violated(), "{what}");
                assert!(
                    q.unique_states < plain.unique_states,
                    "{what}: no reduction"
                );
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 226, "every shipped spec and kind, at both sizes");
}
